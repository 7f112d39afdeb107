/// How a transfer ended: the one value `UpstreamResponseHandler.upstreamDidComplete` receives.
public struct UpstreamCompletion: Sendable {
    /// Nil when the whole response was received (whatever its status); otherwise why the transfer failed.
    public var error: UpstreamError?
    /// When the transfer started, got its first body byte and ended.
    public var timing: UpstreamTiming
    /// Attempts made across all endpoints, 0 when none was started (e.g. an invalid request or a shutdown).
    /// Also in `UpstreamResponseHead.attempts` when a head arrived; here it is known for failures as well.
    public var attempts: Int

    public init(error: UpstreamError? = nil, timing: UpstreamTiming, attempts: Int = 0) {
        self.error = error
        self.timing = timing
        self.attempts = attempts
    }

    /// True when the whole response was received.
    public var succeeded: Bool { error == nil }
}
