#if canImport(Glibc)
import Glibc
#endif

/// Everything an `HTTPServer` can be tuned with. Value type; any thread.
public struct HTTPServerConfiguration: Sendable {
    /// "127.0.0.1", "0.0.0.0", "::", "localhost", ...
    public var host: String
    /// 0 picks a free port (read it back from `HTTPServer.port`).
    public var port: UInt16
    /// Event-loop threads; default: the number of active CPUs.
    public var eventLoopCount: Int
    /// Largest request line + header section; beyond it the answer is 431.
    public var maxHeaderBytes: Int
    /// Largest request body (Content-Length up front, or de-chunked); beyond it the answer is 413.
    public var maxBodyBytes: Int
    /// A smaller body limit for some requests, decided from the method and path before any body byte is read
    /// (so a too-large feedback post gets 413 at once, not after 16 MiB). Nil, or nil for a request: `maxBodyBytes`.
    public var bodyLimit: (@Sendable (_ method: String, _ path: String) -> Int?)? = nil
    /// Server-wide cap on request-body bytes being received (buffered, not yet handed to the responder) across
    /// all connections. A body is reserved in full by its Content-Length, a chunked one chunk by chunk; one that
    /// would pass the cap is answered 503 with `Retry-After` and the connection closes. Keep it at least
    /// `maxBodyBytes`, or bodies that large are always refused. 0 disables the cap.
    public var maxBufferedBodyBytes: Int
    /// Connections beyond this are accepted, answered 503 and closed.
    public var maxConnections: Int
    /// Seconds a request may take to arrive whole, from its first byte; then 408 and close.
    public var requestTimeout: Double
    /// Seconds a keep-alive connection may sit without a request in progress; then it is closed silently.
    public var idleTimeout: Double
    /// Seconds a client may read none of our pending output before it is dropped.
    public var writeTimeout: Double
    /// Per-connection cap on output waiting for the client; beyond it the connection is dropped.
    public var maxPendingOutputBytes: Int
    /// Seconds `HTTPServer.shutdown` waits, after its grace period, for the final bytes that responders wrote
    /// when told `.serverShutdown` (see `HTTPResponseWriter.onClose`) to reach their clients.
    public var shutdownFlushTimeout: Double
    /// Serve HTTPS with this context (nil: plain HTTP). `HTTPServer.replaceTLSContext` swaps it while running.
    public var tls: TLSContext? = nil
    /// Seconds a TLS client has from connecting to finishing its handshake; then it is closed.
    public var tlsHandshakeTimeout: Double = 10
    /// Renders protocol-level errors this module produces itself (400, 408, 413, 431, 501, 503, 505...).
    /// Default: text/plain. The server adds `Retry-After` to its 503s unless the rendered response has one.
    public var errorRenderer: @Sendable (_ status: Int, _ message: String) -> HTTPResponse
    /// Lines for the operator about the server itself, each said once per episode, never per connection: today
    /// that accepting stopped for lack of file descriptors (or kernel memory) and that it resumed. Called on the
    /// accepting loop's thread; must return quickly. Nil: not said.
    public var report: (@Sendable (_ line: String) -> Void)? = nil
    /// Called on the connection's loop once per request when its response ends (an access log); nil: nothing is
    /// recorded, at no cost. It must not block: queue the line and return.
    public var accessObserver: (@Sendable (HTTPAccessRecord) -> Void)? = nil

    public init(host: String = "127.0.0.1", port: UInt16 = 8080) {
        self.host = host
        self.port = port
        eventLoopCount = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        maxHeaderBytes = 16 * 1024
        maxBodyBytes = 16 * 1024 * 1024
        maxBufferedBodyBytes = 256 * 1024 * 1024
        maxConnections = 4096
        requestTimeout = 30
        idleTimeout = 60
        writeTimeout = 60
        maxPendingOutputBytes = 8 * 1024 * 1024
        shutdownFlushTimeout = 1
        errorRenderer = HTTPServerConfiguration.plainTextError
    }

    /// The default error renderer: `text/plain`, the message on one line.
    public static let plainTextError: @Sendable (Int, String) -> HTTPResponse = { status, message in
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"],
                     body: Array((message + "\n").utf8))
    }
}
