import Dispatch
import Foundation
import Synchronization

/// The SQLite `LogSink`: the request log's writer. Owns one read-write connection on its own background thread; the request
/// path only appends to an in-memory bounded queue and never waits on disk.
///
/// The thread wakes when work is submitted to an idle writer (and every `flushInterval` regardless),
/// takes up to `maxBatch` requests plus the feedback submitted behind them, and writes requests then
/// feedback in one transaction. Feedback completions run after that commit.
///
/// Thread rules: every method may be called from any thread. Feedback completions run on the writer
/// thread and should be short (the next batch waits for them). Called from a completion, `flush()` returns
/// at once and `close()` only starts the shutdown (waiting there would be the writer waiting on itself).
///
/// Durability: a graceful `close()` loses nothing. After a `kill -9` committed rows survive (WAL), but the
/// in-memory queue is gone: at most `capacity` + `maxBatch` requests not yet committed — normally only what
/// arrived in the last batch interval (well under `flushInterval` of traffic) — plus feedback still pending,
/// whose callers were not yet answered. Acknowledged feedback is never among them: it is answered after its
/// commit. On power loss or an OS crash, commits with `synchronous=NORMAL` (request rows, and feedback with
/// `FeedbackDurability.normal`) may be rolled back, the last ones first, never corrupted; feedback with
/// `.full` was fsynced before it was acknowledged.
///
/// Storage failures (disk full, `maxSizeBytes` reached, read-only, I/O errors) do not stop the writer: see
/// `LogHealth`. It holds the failed batch, keeps taking rows into its bounded queue (dropping and counting
/// beyond it), refuses feedback with `.storageUnavailable`, retries with backoff (50 ms doubling to 2 s),
/// says so once through `report`, and says so again when it writes again.
public final class SQLiteLogWriter: LogSink {
    private let core: WriterCore

    /// Pending feedback submissions allowed before `submitFeedback` answers `.overloaded`.
    public static let feedbackCapacity = 10_000

    /// Opens (creating the file, not its directory — a missing directory is a clear `.backend` error) the
    /// database at `path`, switches it to WAL, migrates it and starts the writer thread.
    /// - Parameters:
    ///   - capacity: requests held in memory before `enqueue` starts dropping.
    ///   - maxBatch: most requests written per transaction.
    ///   - flushInterval: seconds an idle writer sleeps before checking the queue on its own.
    /// - Throws: `StoreError` (`.backend`, `.busy`, `.schemaTooNew`).
    /// - Parameter cacheKiB: the writer connection's SQLite page cache (it fills as the log grows).
    /// - Parameter feedbackDurability: whether commits carrying feedback fsync the WAL before it is acknowledged.
    /// - Parameter maxSizeBytes: a cap on the database file (`PRAGMA max_page_count`); reaching it is a full disk.
    /// - Parameter report: where storage failures and recoveries are said (one line each).
    /// - Parameter rewrite: applied to every request row on the writer thread before it is stored (the daemon's
    ///   write-time redaction); it must not block.
    public init(path: String, capacity: Int = 10_000, maxBatch: Int = 1_000, flushInterval: Double = 0.05,
                cacheKiB: Int = 32 << 10, feedbackDurability: FeedbackDurability = .full, maxSizeBytes: Int64? = nil,
                report: @escaping @Sendable (String) -> Void = { _ in },
                rewrite: (@Sendable (inout RequestRecord) -> Void)? = nil) throws(StoreError) {
        precondition(capacity > 0 && maxBatch > 0 && flushInterval > 0, "SQLiteLogWriter limits must be positive")
        let connection = try StoreDatabase.openForWriting(path: path, cacheKiB: cacheKiB)
        let core = WriterCore(capacity: capacity, maxBatch: maxBatch, flushInterval: flushInterval,
                              feedbackCapacity: Self.feedbackCapacity, feedbackDurability: feedbackDurability, report: report,
                              rewrite: rewrite)
        let batchWriter = try translatingSQLiteErrors { () throws(SQLiteError) in try SQLiteBatchWriter(connection: connection, core: core) }
        if let maxSizeBytes { batchWriter.applyMaxSize(maxSizeBytes) }
        self.core = core
        let thread = Thread { batchWriter.run() }
        thread.name = "flywheel-log-writer"
        thread.start()
    }

    deinit { close() }

    /// Queues a request row. Never blocks on disk: takes the lock, appends, and wakes an idle writer.
    /// Returns false (and counts a drop) when the queue is full or the writer is closed.
    @discardableResult
    public func enqueue(_ record: RequestRecord) -> Bool {
        let (accepted, wake) = core.state.withLock { s -> (Bool, Bool) in
            guard !s.closing, s.queue.append(record) else { return (false, false) }
            s.enqueuedTotal &+= 1
            // Rows alone wake the writer only once a whole batch is waiting; otherwise it comes by itself
            // within `flushInterval` (group commit, and no wake-up system call per request).
            let wake = s.writerIdle && !s.refusing && s.queue.count >= core.maxBatch
            if wake { s.writerIdle = false }
            return (true, wake)
        }
        if wake { core.wakeup.signal() }
        if !accepted { core.dropped.wrappingAdd(1, ordering: .relaxed) }
        return accepted
    }

    /// Commits the feedback row, then calls `completion` on the writer thread with its id (or, for a
    /// repeated idempotency key with identical feedback, the original row's id and `duplicate: true`).
    /// The rules, failures and the `deadline` are those of `LogSink.submitFeedback(_:deadline:completion:)`;
    /// a deadline's `.deadlineExceeded` arrives on a Dispatch global queue. `feedback.id` is ignored.
    ///
    /// Requests enqueued before this call are written first (in the same transaction or an earlier one),
    /// so feedback for a just-finished request finds it.
    public func submitFeedback(_ feedback: FeedbackRecord, deadline: DispatchTime?,
                               completion: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> Void) {
        if let deadline, deadline <= .now() { return completion(.failure(.deadlineExceeded)) }
        let ticket = FeedbackTicket(record: feedback, completion: completion)
        let capacity = core.feedbackCapacity
        let (rejection, wake) = core.state.withLock { s -> (StoreError?, Bool) in
            if s.closing { return (.closed, false) }
            if s.pendingFeedback >= capacity { return (.overloaded, false) }
            s.controls.append(.feedback(ticket, after: s.enqueuedTotal))
            s.pendingFeedback += 1
            let wake = s.writerIdle
            s.writerIdle = false
            return (nil, wake)
        }
        if let rejection { return completion(.failure(rejection)) }
        if let deadline { ticket.expire(at: deadline) }
        if wake { core.wakeup.signal() }
    }

    /// Requests waiting in memory (not yet taken by the writer).
    public var queueDepth: Int { core.state.withLock { $0.queue.count } }

    /// Feedback submitted but not yet taken by the writer thread (internal; tests use it).
    var pendingFeedbackCount: Int { core.state.withLock { $0.pendingFeedback } }

    /// Requests refused by `enqueue` (queue full or closed) since start.
    public var droppedCount: Int { core.dropped.load(ordering: .relaxed) }

    /// Request rows committed since start.
    public var writtenCount: Int { core.written.load(ordering: .relaxed) }

    /// Request rows that could not be written even on their own (see `lastWriteError`).
    public var writeErrorCount: Int { core.writeErrors.load(ordering: .relaxed) }

    /// The most recent error behind `writeErrorCount`, for logs.
    public var lastWriteError: StoreError? { core.lastError.withLock { $0 } }

    /// Whether the storage takes writes now, rows held for the retry, and failures by reason.
    public var health: LogHealth { core.health.withLock { $0 } }

    /// Caps the database file at `bytes` (nil: no cap), applied by the writer thread before its next write; a
    /// writer waiting out a full disk retries at once. A cap below the current size means "full now".
    public func setMaxSize(bytes: Int64?) {
        let wake = core.state.withLock { s -> Bool in
            s.requestedMaxSize = bytes
            s.maxSizeChanged = true
            let wake = s.writerIdle
            s.writerIdle = false
            return wake
        }
        if wake { core.wakeup.signal() }
    }

    /// Blocks until everything enqueued or submitted before the call is committed (or has failed and been
    /// counted). Returns at once after `close()`.
    public func flush() {
        if core.isOnWriterThread { return }
        let semaphore = DispatchSemaphore(value: 0)
        let (waiting, wake) = core.state.withLock { s -> (Bool, Bool) in
            if s.finished { return (false, false) }
            s.controls.append(.barrier(after: s.enqueuedTotal, semaphore))
            let wake = s.writerIdle
            s.writerIdle = false
            return (true, wake)
        }
        if wake { core.wakeup.signal() }
        if waiting { semaphore.wait() }
    }

    /// Stops accepting work, drains and commits everything queued, checkpoints the WAL, stops the thread
    /// and closes the database; returns when all that is done. Idempotent and safe to call concurrently.
    /// Later `enqueue`s return false; later feedback fails with `.closed`. From a feedback completion it
    /// only starts the shutdown and returns.
    public func close() {
        let onWriterThread = core.isOnWriterThread
        let semaphore = DispatchSemaphore(value: 0)
        let waiting = core.state.withLock { s -> Bool in
            if s.finished { return false }
            s.closing = true
            if onWriterThread { return false }
            s.closeWaiters.append(semaphore)
            return true
        }
        core.wakeup.signal()
        if waiting { semaphore.wait() }
    }
}

extension SQLiteLogWriter: LogPruning {
    /// Starts a prune pass on the writer thread; see `LogPruning.prune(_:progress:completion:)`.
    @discardableResult
    public func prune(_ plan: RetentionPlan, progress: (@Sendable (PruneResult) -> Void)? = nil,
                      completion: @escaping @Sendable (PruneResult) -> Void) -> Bool {
        let job = PruneJob(plan: plan, progress: progress, completion: completion)
        let (accepted, wake) = core.state.withLock { s -> (Bool, Bool) in
            guard !s.closing, !s.pruneInProgress else { return (false, false) }
            s.pendingPrune = job
            s.pruneInProgress = true
            let wake = s.writerIdle
            s.writerIdle = false
            return (true, wake)
        }
        if wake { core.wakeup.signal() }
        return accepted
    }

    public var prunedRequestCount: Int { core.prunedRequests.load(ordering: .relaxed) }
    public var prunedFeedbackCount: Int { core.prunedFeedback.load(ordering: .relaxed) }
}
