/// Handle to one running transfer, returned by `UpstreamClient.start`.
/// Sendable: it holds only the job, whose cross-thread entry point (`requestCancel`) uses atomics and the
/// engine's Mutex-protected inbox.
public final class UpstreamTransfer: Sendable {
    let job: TransferJob

    init(job: TransferJob) { self.job = job }

    /// Stops the transfer from any thread (client disconnected). The handler then gets
    /// complete(.failure(.cancelled)) unless it already completed. Idempotent; returns without waiting.
    public func cancel() { job.requestCancel() }

    /// True once the handler's `upstreamDidComplete` has been (or is being) called. Any thread.
    public var isCompleted: Bool { job.completed.load(ordering: .acquiring) }
}
