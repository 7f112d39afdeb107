/// A log that can delete its old request rows (retention). Kept apart from `LogSink` so a sink that cannot
/// prune (a test double, a remote backend) need not pretend to.
///
/// The rules: a pass deletes exactly the rows the plan's cutoffs select, with their feedback and everything
/// else keyed by their id, in batches that never hold up the writing of new rows for longer than one batch;
/// eval runs and policy history are never touched. Thread rules: any thread.
public protocol LogPruning: AnyObject, Sendable {
    /// Starts a pass; `progress` after each batch's commit and `completion` once at its end, both on the
    /// writer's thread (keep them short). False (and nothing started) when a pass is already pending or
    /// running, or the log is closing. A pass still running at `close()` ends early, marked interrupted.
    @discardableResult
    func prune(_ plan: RetentionPlan, progress: (@Sendable (PruneResult) -> Void)?,
               completion: @escaping @Sendable (PruneResult) -> Void) -> Bool
    /// Request rows deleted by passes since the log was opened.
    var prunedRequestCount: Int { get }
    /// Feedback rows deleted with them.
    var prunedFeedbackCount: Int { get }
}
