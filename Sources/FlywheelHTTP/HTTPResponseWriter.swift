import FlywheelSockets
import Synchronization

/// The way a responder answers one request. Thread-safe: every method may be called from any thread.
/// Calls made on the connection's own event loop act at once; calls from other threads are queued to that
/// loop in order. After the response ended or the client left, every call is a no-op.
public final class HTTPResponseWriter: Sendable {
    private enum Status: UInt8 {
        case open = 0
        case finished = 1
        case clientGone = 2
        case serverShutdown = 3
    }

    private let connection: LoopBound<Connection>
    private let server: HTTPServerState
    private let status = Atomic<UInt8>(Status.open.rawValue)
    /// Fields the responder adds to this request's access-log line.
    private let accessNotes = Mutex<[(String, String)]>([])

    init(connection: LoopBound<Connection>, server: HTTPServerState) {
        self.connection = connection
        self.server = server
    }

    /// True once the server is shutting down: it accepts nothing new and waits, up to its grace period, for the
    /// responses in progress. A response that would not end on its own (a live event stream) should end now.
    /// Any thread.
    public var serverIsDraining: Bool { server.isDraining.load(ordering: .relaxed) }

    /// Sends a complete response with `Content-Length`.
    public func send(_ response: HTTPResponse) {
        guard !isClosed else { return }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.send(response, from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.send(response, from: self) }
        }
    }

    /// Starts a streamed response: chunked on HTTP/1.1, close-delimited on HTTP/1.0.
    public func startStream(status: Int, headers: HTTPHeaders) {
        guard !isClosed else { return }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.startStream(status: status, headers: headers, from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.startStream(status: status, headers: headers, from: self) }
        }
    }

    /// Loop thread only. Bytes written and not yet taken by the client: a streaming responder with more to say
    /// than the client reads (a dashboard) can skip a beat instead of queueing.
    public var pendingOutputBytes: Int {
        connection.loop.inEventLoop ? connection.value.pendingOutputBytes : 0
    }

    /// Sends `bytes` as one chunk, immediately (no buffering delay). Empty writes are ignored.
    public func write(_ bytes: [UInt8]) {
        guard !isClosed, !bytes.isEmpty else { return }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.writeChunk(bytes, from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.writeChunk(bytes, from: self) }
        }
    }

    /// Ends a streamed response.
    public func endStream() {
        guard !isClosed else { return }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.endStream(from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.endStream(from: self) }
        }
    }

    /// Closes the connection at once and leaves the response unfinished: the client sees it cut short (a chunked
    /// body without its last chunk, a `Content-Length` body never sent). For a responder that has no proper way
    /// to report a failure, such as a fake upstream in tests playing one that dies mid-stream. The `onClose`
    /// callbacks do not run (the responder chose this end).
    public func abort() {
        guard !isClosed else { return }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.abort(from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.abort(from: self) }
        }
    }

    /// Whether the server keeps an access log; when false, `noteForAccessLog` need not be called. Any thread.
    public var recordsAccess: Bool { server.configuration.accessObserver != nil }

    /// Adds `key=value` to the request's access-log line (model, route, key id...); never a secret. Any thread;
    /// notes added after the response ended are not seen.
    public func noteForAccessLog(_ key: String, _ value: String) {
        guard recordsAccess else { return }
        accessNotes.withLock { $0.append((key, value)) }
    }

    var notesForAccessLog: [(String, String)] { accessNotes.withLock { $0 } }

    /// The event loop that owns the connection (responders are called on it; calls made there act at once).
    /// Any thread.
    public var eventLoop: HTTPEventLoop { connection.loop }

    /// True once the client went away or the response finished.
    public var isClosed: Bool {
        status.load(ordering: .acquiring) != Status.open.rawValue
    }

    /// Runs once, on the event loop, if the response ends before the responder ended it, with the reason:
    /// - `.clientDisconnected`: the client left; nothing more can be sent.
    /// - `.serverShutdown`: `HTTPServer.shutdown`'s grace period ran out. The connection is still open during
    ///   the callback and calls made inside it act at once (it runs on the loop thread), so a responder can
    ///   end properly, e.g. write a final SSE error event and `endStream()`. Those bytes are flushed (for at most
    ///   `HTTPServerConfiguration.shutdownFlushTimeout`) before the socket closes; later writes are dropped.
    /// Runs at once (on the calling thread) if the response already ended that way; never if it finished normally.
    public func onClose(_ callback: @escaping @Sendable (HTTPCloseReason) -> Void) {
        switch Status(rawValue: status.load(ordering: .acquiring)) {
        case .clientGone: callback(.clientDisconnected); return
        case .serverShutdown: callback(.serverShutdown); return
        case .finished: return
        default: break
        }
        let loop = connection.loop
        if loop.inEventLoop {
            connection.value.addCloseCallback(callback, from: self)
        } else {
            let connection = self.connection
            loop.execute { connection.value.addCloseCallback(callback, from: self) }
        }
    }

    // MARK: Connection side (its loop thread)

    /// Why the response was cut, once it was; nil while open or after it finished normally.
    var closeReason: HTTPCloseReason? {
        switch Status(rawValue: status.load(ordering: .acquiring)) {
        case .clientGone: .clientDisconnected
        case .serverShutdown: .serverShutdown
        default: nil
        }
    }

    func markFinished() {
        status.store(Status.finished.rawValue, ordering: .releasing)
    }

    func markClosed(_ reason: HTTPCloseReason) {
        let closed: Status = reason == .clientDisconnected ? .clientGone : .serverShutdown
        status.store(closed.rawValue, ordering: .releasing)
    }
}
