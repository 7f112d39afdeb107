import Dispatch

/// Where the gateway sends what it logs: request rows (fire and forget, never blocking on disk) and
/// feedback (answered once stored). The SQLite implementation is `SQLiteLogWriter`; another backend
/// implements this protocol and passes the contract suite (`LogStoreContractTests`).
///
/// The rules every implementation keeps:
/// - No accepted row is lost: a request id that is already in the log is stored under a new id
///   (`id#2`, `id#3`, ...), and `close()` writes everything accepted before it returns.
/// - Feedback submitted after a request row was enqueued finds that row, written or not.
/// - Feedback for an id not in the log fails with `.unknownRequest`.
/// - Feedback repeating an idempotency key: identical (`FeedbackRecord.isSameSubmission(as:)`) answers
///   the first row's id with `duplicate: true`; different fails with `.idempotencyConflict`.
///
/// Thread rules: every member may be called from any thread.
public protocol LogSink: AnyObject, Sendable {
    /// Queues a request row without blocking on disk. False (and a drop counted) when the queue is full
    /// or the sink is closed.
    @discardableResult
    func enqueue(_ record: RequestRecord) -> Bool

    /// Stores `feedback` and calls `completion` exactly once with the outcome.
    ///
    /// Failures: `.unknownRequest`, `.idempotencyConflict`, `.busy`, `.storageUnavailable`, `.backend`; `.overloaded` and `.closed`
    /// are answered at once, on the calling thread.
    ///
    /// Bounding the wait: with a `deadline`, the completion is called no later than the deadline — with
    /// `.deadlineExceeded` if the store has not answered by then (on some other thread). Feedback the
    /// writer had not yet started on is then never written; feedback it was already writing may still be
    /// committed, so a caller that answers "try again" should say to retry with the same idempotency key
    /// (a retry of stored feedback is then answered `duplicate`). A deadline already past answers at once.
    /// Without a deadline the completion waits for the writer however long that takes; a caller may still
    /// run its own timer and ignore a late completion, but then does not know whether the row was written.
    func submitFeedback(_ feedback: FeedbackRecord, deadline: DispatchTime?,
                        completion: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> Void)

    /// Blocks until everything enqueued or submitted before the call is stored (or has failed and been
    /// counted). Returns at once after `close()`, and while the storage refuses writes (`health.healthy` false:
    /// the rows then wait in memory for the retry).
    func flush()

    /// Stops accepting work, stores everything accepted, releases the backend, and returns when done.
    /// Idempotent. Later `enqueue`s return false; later feedback fails with `.closed`.
    func close()

    /// Request rows accepted but not yet taken by the writer.
    var queueDepth: Int { get }
    /// Request rows refused by `enqueue` (queue full or closed) since start.
    var droppedCount: Int { get }
    /// Request rows stored since start.
    var writtenCount: Int { get }
    /// Request rows that could not be stored (see `lastWriteError`).
    var writeErrorCount: Int { get }
    /// The most recent error behind `writeErrorCount`, for logs.
    var lastWriteError: StoreError? { get }
    /// Whether the storage takes writes now (see `LogHealth`).
    var health: LogHealth { get }
    /// Caps the stored log at `bytes` (nil: no cap); reaching the cap is handled like a full disk.
    func setMaxSize(bytes: Int64?)
}

extension LogSink {
    /// `submitFeedback(_:deadline:completion:)` without a deadline.
    public func submitFeedback(_ feedback: FeedbackRecord,
                               completion: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> Void) {
        submitFeedback(feedback, deadline: nil, completion: completion)
    }
}
