/// One request to send upstream: what to send and where to, in which order of endpoints, within which limits.
public struct UpstreamRequest: Sendable {
    /// HTTP method, usually "POST" or "GET"; any token is accepted.
    public var method: String
    /// Appended to each endpoint's `baseURL`, e.g. "/chat/completions".
    public var path: String
    /// Request headers such as Content-Type and Accept. `Authorization` here is replaced by the endpoint's key when
    /// the endpoint has one. Hop-by-hop and framing headers (Host, Content-Length, Transfer-Encoding, Connection,
    /// Keep-Alive, Expect) are dropped: curl writes its own.
    public var headers: [(String, String)]
    /// The request body, sent as is.
    public var body: [UInt8]
    /// Ordered: primary first, then fallbacks.
    public var endpoints: [UpstreamEndpoint]
    public var timeouts: UpstreamTimeouts
    public var retry: RetryPolicy

    public init(
        method: String = "POST",
        path: String,
        headers: [(String, String)] = [],
        body: [UInt8] = [],
        endpoints: [UpstreamEndpoint],
        timeouts: UpstreamTimeouts = .init(),
        retry: RetryPolicy = .init()
    ) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.endpoints = endpoints
        self.timeouts = timeouts
        self.retry = retry
    }
}
