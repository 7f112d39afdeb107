/// When and how often a request is tried again on the same endpoint before moving to the next one.
public struct RetryPolicy: Sendable {
    /// Retries per endpoint after the first attempt on it.
    public var maxRetries: Int = 2
    /// First backoff in seconds; doubled for every further retry, with jitter, capped at `maxBackoff`.
    public var initialBackoff: Double = 0.2
    /// Upper bound for one backoff wait. A `Retry-After` longer than this is not waited for at all: the next
    /// endpoint is tried, or the answer (with its `Retry-After`) goes to the client, who may wait that long.
    public var maxBackoff: Double = 5
    /// Statuses that are retried when they arrive before any body byte was delivered.
    public var retryableStatuses: Set<Int> = [408, 409, 429, 500, 502, 503, 504]

    public init(
        maxRetries: Int = 2,
        initialBackoff: Double = 0.2,
        maxBackoff: Double = 5,
        retryableStatuses: Set<Int> = [408, 409, 429, 500, 502, 503, 504]
    ) {
        self.maxRetries = maxRetries
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.retryableStatuses = retryableStatuses
    }

    /// Backoff in nanoseconds before retry number `retry` (1 = first retry): exponential with "equal jitter"
    /// (half fixed, half random) capped at `maxBackoff`, or the upstream's `Retry-After` (seconds, already
    /// parsed by `RetryAfter`) when given. Nil when that is longer than `maxBackoff`: asking again sooner than
    /// the upstream said would only be refused again.
    func backoffNanos(retry: Int, retryAfter: Double?) -> UInt64? {
        let cap = max(0, maxBackoff)
        if let retryAfter, retryAfter >= 0 {
            return retryAfter <= cap ? Self.nanos(retryAfter) : nil
        }
        let exponent = Double(1 << min(max(retry - 1, 0), 30))
        let base = min(max(0, initialBackoff) * exponent, cap)
        let jittered = base / 2 + Double.random(in: 0...1) * base / 2
        return Self.nanos(jittered)
    }

    static func nanos(_ seconds: Double) -> UInt64 {
        guard seconds > 0 else { return 0 }
        guard seconds < 1e9 else { return UInt64(1e18) }
        return UInt64(seconds * 1e9)
    }
}
