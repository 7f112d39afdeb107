/// Time limits for one request, in seconds.
public struct UpstreamTimeouts: Sendable {
    /// TCP + TLS connect limit per attempt (CURLOPT_CONNECTTIMEOUT_MS). Exceeding it is retryable.
    public var connect: Double = 10
    /// Limit from the start of an attempt to the response head. Exceeding it is retryable.
    public var firstByte: Double = 120
    /// Limit for the whole request: every attempt, every backoff wait and the streamed body. Not retryable.
    public var total: Double = 600

    public init(connect: Double = 10, firstByte: Double = 120, total: Double = 600) {
        self.connect = connect
        self.firstByte = firstByte
        self.total = total
    }
}
