/// Cross-thread state of a `CurlEngine`, only touched under its Mutex.
struct EngineInbox {
    /// Commands not yet taken by the curl thread, in submission order.
    var commands: [EngineCommand] = []
    /// A `curl_multi_wakeup` was sent and the curl thread has not drained since: further submits need not wake it.
    var wakeupPending = false
    /// `shutdown()` was called.
    var shutdownRequested = false
    /// The curl thread has taken its last drain: the multi handle may be gone; submits are refused.
    var closed = false

    init() { commands.reserveCapacity(256) }
}
