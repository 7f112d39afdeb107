/// Why a response ended before its responder ended it, as told to `HTTPResponseWriter.onClose` callbacks.
public enum HTTPCloseReason: Sendable, Equatable {
    /// The client closed the connection (or it failed, or stopped reading past the write timeout).
    case clientDisconnected
    /// `HTTPServer.shutdown`'s grace period ran out. The connection is still open while the callback runs:
    /// what the responder writes from inside it (e.g. a final error event and `endStream()`) is sent.
    case serverShutdown
}
