/// Time limits for one request, in seconds.
public struct UpstreamTimeouts: Sendable {
    /// TCP + TLS connect limit per attempt (CURLOPT_CONNECTTIMEOUT_MS). Exceeding it is retryable.
    public var connect: Double = 10
    /// Limit from the start of an attempt to the response head. Exceeding it is retryable.
    public var firstByte: Double = 120
    /// Limit for the whole request: every attempt, every backoff wait and the streamed body. Not retryable.
    public var total: Double = 600
    /// Longest silence once the head arrived: from the head to the first body byte and between two body bytes.
    /// A response that stalls this long ends with `.timedOut(phase: "next byte")`, not retried (bytes may have
    /// reached the client). 0 turns it off (only `total` bounds the body then).
    public var idle: Double = 300

    public init(connect: Double = 10, firstByte: Double = 120, total: Double = 600, idle: Double = 300) {
        self.connect = connect
        self.firstByte = firstByte
        self.total = total
        self.idle = idle
    }
}
