/// Handle to one running transfer, returned by `UpstreamClient.start`. Keeping it after completion is fine: the
/// client has let go of the handler by then, so a handler holding its transfer forms no cycle.
/// Sendable: it holds only the job, whose cross-thread entry point (`requestCancel`) uses atomics and
/// `TransferScheduler.submit`.
public final class UpstreamTransfer: Sendable {
    let job: TransferJob

    init(job: TransferJob) { self.job = job }

    /// Stops the transfer from any thread (client disconnected). The handler then completes with
    /// `.cancelled` unless it already completed. Idempotent; returns without waiting.
    public func cancel() { job.requestCancel() }

    /// True once the handler's `upstreamDidComplete` has been (or is being) called. Any thread.
    public var isCompleted: Bool { job.completed.load(ordering: .acquiring) }
}
