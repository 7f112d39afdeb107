/// One request as the access log sees it, handed to `HTTPServerConfiguration.accessObserver` when its response
/// ends (or the connection ends it). Carries no header values and no body: only what an operator's access log
/// may hold. `path` has no query string (a browser's `?key=` must not reach a log).
public struct HTTPAccessRecord: Sendable {
    public enum Ending: String, Sendable {
        /// The whole response went out (to the kernel).
        case completed
        /// The client left, or its connection failed, before the response ended.
        case clientGone = "client_gone"
        /// The server's shutdown ended the response.
        case serverShutdown = "server_shutdown"
    }
    /// The client's address (`ip:port`).
    public var remoteAddress: String
    /// "-" when the request could not be parsed.
    public var method: String
    public var path: String
    /// 0 when nothing was sent.
    public var status: Int
    /// Body bytes sent (chunk framing not counted).
    public var bodyBytes: Int
    /// From the first byte of the request to the end of the response.
    public var durationNanos: UInt64
    /// The response's `x-request-id`, if it had one.
    public var requestID: String?
    /// What the responder added with `HTTPResponseWriter.noteForAccessLog` (model, route, key id...).
    public var notes: [(String, String)]
    public var ending: Ending
}
