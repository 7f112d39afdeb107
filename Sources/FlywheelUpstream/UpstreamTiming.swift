/// CLOCK_MONOTONIC timestamps (nanoseconds) of one transfer.
public struct UpstreamTiming: Sendable {
    /// When `UpstreamClient.start` was called.
    public var startedNanos: UInt64
    /// When the committed response's first body byte arrived; nil if none did.
    public var firstByteNanos: UInt64?
    /// When the transfer completed (successfully or not).
    public var finishedNanos: UInt64

    public init(startedNanos: UInt64, firstByteNanos: UInt64?, finishedNanos: UInt64) {
        self.startedNanos = startedNanos
        self.firstByteNanos = firstByteNanos
        self.finishedNanos = finishedNanos
    }
}
