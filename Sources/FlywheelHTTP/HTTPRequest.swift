import FlywheelSockets

/// One complete HTTP request as received (body already de-chunked). Value type; any thread.
public struct HTTPRequest: Sendable {
    public var method: String
    /// The request target as sent, e.g. "/v1/models?x=1".
    public var target: String
    /// `target` up to the first "?".
    public var path: String
    /// The raw text after the first "?", or nil when there is none.
    public var query: String?
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The peer as "127.0.0.1:53422" or "[::1]:53422".
    public var remoteAddress: String
    /// CLOCK_MONOTONIC nanoseconds when the first byte of this request arrived.
    public var receivedAtNanos: UInt64

    /// Convenience for tests and in-process callers: HTTP/1.1, no remote address, received now.
    public init(method: String, target: String, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.init(method: method, target: target, version: .http1_1, headers: headers, body: body,
                  remoteAddress: "", receivedAtNanos: MonotonicClock.now())
    }

    public init(method: String, target: String, version: HTTPVersion, headers: HTTPHeaders, body: [UInt8],
                remoteAddress: String, receivedAtNanos: UInt64) {
        self.method = method
        self.target = target
        if let question = target.utf8.firstIndex(of: UInt8(ascii: "?")) {
            path = String(target[..<question])
            query = String(target[target.index(after: question)...])
        } else {
            path = target
            query = nil
        }
        self.version = version
        self.headers = headers
        self.body = body
        self.remoteAddress = remoteAddress
        self.receivedAtNanos = receivedAtNanos
    }

    /// Whether the client asked to keep the connection open after this exchange
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    public var wantsKeepAlive: Bool {
        if version.major == 1 && version.minor >= 1 {
            return !headers.containsToken("close", in: "Connection")
        }
        return headers.containsToken("keep-alive", in: "Connection")
    }
}
