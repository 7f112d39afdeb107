import Dispatch

/// Everything the request path and the writer thread share. Only touched inside `WriterCore.state`'s lock.
struct WriterState: Sendable {
    /// Request rows waiting for the writer.
    var queue: RingBuffer<RequestRecord>
    /// Feedback and flush barriers, in submission order.
    var controls: [WriterControl] = []
    /// How many of `controls` are feedback (bounded by `WriterCore.feedbackCapacity`).
    var pendingFeedback = 0
    /// Requests accepted by `enqueue` since start.
    var enqueuedTotal: UInt64 = 0
    /// Requests taken from `queue` by the writer since start.
    var dequeuedTotal: UInt64 = 0
    /// The writer is (about to be) waiting on `WriterCore.wakeup`; the next submitter signals it.
    var writerIdle = false
    /// The writer is waiting out a storage failure's backoff: rows alone do not wake it (feedback does, to be
    /// refused at once).
    var refusing = false
    /// `close()` was called: no new work is accepted; the writer drains and stops.
    var closing = false
    /// The writer thread has committed everything, closed the database and exited.
    var finished = false
    /// Callers of `close()` waiting for `finished`.
    var closeWaiters: [DispatchSemaphore] = []
    /// A new size cap (`setMaxSize(bytes:)`, nil for none) for the writer to apply; `maxSizeChanged` says one is waiting.
    var requestedMaxSize: Int64?
    var maxSizeChanged = false
    /// A prune pass submitted and not yet taken by the writer.
    var pendingPrune: PruneJob?
    /// A prune pass is pending or running (at most one at a time).
    var pruneInProgress = false
}

/// A prune pass as submitted to the writer: the plan and whom to tell.
struct PruneJob: Sendable {
    var plan: RetentionPlan
    /// Called on the writer thread after each batch's commit, with the totals so far.
    var progress: (@Sendable (PruneResult) -> Void)?
    /// Called once, on the writer thread, when the pass ends (done or interrupted).
    var completion: @Sendable (PruneResult) -> Void
}
