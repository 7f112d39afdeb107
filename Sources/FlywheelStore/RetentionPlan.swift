/// Which request rows a prune pass removes: each row's cutoff (unix milliseconds; rows created before it go)
/// from its requested model and whether it has feedback. The daemon builds one from `log.retention_days`, the
/// routes' and local models' overrides and `log.retention_days_with_feedback`; the store only walks the rows.
///
/// Eval runs, eval items and the policy-change history are never touched: they are not request rows.
public struct RetentionPlan: Sendable {
    /// No row created at or after this is looked at (the newest cutoff any row can have): the pass walks the
    /// `(created_at, id)` index from the oldest row up to here.
    public var scanBefore: Int64
    /// The cutoff of a row with this requested model (nil when the request named none) and feedback (true when
    /// it has any); nil keeps the row whatever its age.
    public var cutoff: @Sendable (_ model: String?, _ hasFeedback: Bool) -> Int64?
    /// Rows examined per transaction. Each batch is a short write transaction; between two batches the writer
    /// commits whatever requests and feedback are waiting, so a long prune never holds up the log.
    public var batchSize: Int

    public init(scanBefore: Int64, batchSize: Int = 2_000, cutoff: @escaping @Sendable (_ model: String?, _ hasFeedback: Bool) -> Int64?) {
        precondition(batchSize > 0, "a prune batch must examine at least one row")
        self.scanBefore = scanBefore
        self.batchSize = batchSize
        self.cutoff = cutoff
    }
}

/// What a prune pass did (or, dry, would do).
public struct PruneResult: Sendable, Equatable {
    /// Request rows deleted.
    public var requests = 0
    /// Feedback rows deleted with them.
    public var feedback = 0
    /// Rows older than `scanBefore` examined.
    public var examined = 0
    /// Transactions (batches) the pass took.
    public var batches = 0
    /// The pass ended before it was done (the writer closed, or an error; see `error`).
    public var interrupted = false
    public var error: StoreError?

    public init() {}
}
