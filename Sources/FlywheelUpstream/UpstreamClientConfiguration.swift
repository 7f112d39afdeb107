/// Settings of one `UpstreamClient`, fixed when it is created.
public struct UpstreamClientConfiguration: Sendable {
    /// CURLMOPT_MAX_HOST_CONNECTIONS: further transfers to the same host wait for a free connection.
    public var maxConnectionsPerHost: Int = 256
    /// CURLMOPT_MAX_TOTAL_CONNECTIONS, also the size of the keep-alive connection cache.
    public var maxTotalConnections: Int = 1024
    /// False disables peer and host name verification (self-signed local upstreams only).
    public var verifyTLS: Bool = true
    /// CA bundle file (CURLOPT_CAINFO); nil uses libcurl's default.
    public var caBundlePath: String? = nil
    /// User-Agent header unless the request sets its own.
    public var userAgent: String = "flywheel"

    public init(
        maxConnectionsPerHost: Int = 256,
        maxTotalConnections: Int = 1024,
        verifyTLS: Bool = true,
        caBundlePath: String? = nil,
        userAgent: String = "flywheel"
    ) {
        self.maxConnectionsPerHost = maxConnectionsPerHost
        self.maxTotalConnections = maxTotalConnections
        self.verifyTLS = verifyTLS
        self.caBundlePath = caBundlePath
        self.userAgent = userAgent
    }
}
