import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// The writer thread's side of a `SQLiteLogWriter`: owns the read-write connection and its prepared
/// statements, takes work from `WriterCore`, writes it in batches.
///
/// `@unchecked Sendable` is safe because ownership moves exactly once: `SQLiteLogWriter.init` creates the
/// engine, hands it to the thread it starts and never touches it again; from then on only that thread
/// calls into it (and so into the non-thread-safe `SQLiteConnection`).
final class SQLiteBatchWriter: @unchecked Sendable {
    private let connection: SQLiteConnection
    private let core: WriterCore

    private static let beginSQL = "BEGIN IMMEDIATE"
    private static let commitSQL = "COMMIT"
    private static let rollbackSQL = "ROLLBACK"
    private static let requestExistsSQL = "SELECT 1 FROM requests WHERE id = ?"
    private static let feedbackByKeySQL = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE idempotency_key = ?"
    private static let episodeRequestsSQL = "SELECT id FROM requests WHERE episode_id = ? ORDER BY created_at, id"
    private static let insertRequestSQL = RequestColumns.insertSQL + " ON CONFLICT(id) DO NOTHING"
    /// The suffix for the next copy of a resent id: 2 the first time, one more each time after.
    private static let nextSuffixSQL = """
        INSERT INTO request_id_suffixes (id, last_suffix) VALUES (?, 2)
        ON CONFLICT(id) DO UPDATE SET last_suffix = last_suffix + 1 RETURNING last_suffix
        """

    init(connection: SQLiteConnection, core: WriterCore) throws(SQLiteError) {
        self.connection = connection
        self.core = core
        // Prepare everything up front so a broken statement fails `SQLiteLogWriter.init`, not the first batch.
        for sql in [Self.beginSQL, Self.commitSQL, Self.rollbackSQL, Self.requestExistsSQL, Self.feedbackByKeySQL,
                    Self.insertRequestSQL, Self.nextSuffixSQL, FeedbackColumns.insertSQL, Self.episodeRequestsSQL] {
            _ = try connection.statement(sql)
        }
    }

    private enum Step { case work, sleep, wait(UInt64), refuse(UInt64), exit }

    // While the storage refuses writes (disk full, read-only, I/O errors). Writer thread only.
    /// Rows of the write that failed, retried first (at most `maxBatch`: no more rows are taken meanwhile, so
    /// the rest wait in the bounded queue, which drops and counts beyond its capacity).
    private var held: [RequestRecord] = []
    /// When the next attempt is due (uptime nanoseconds) after a failed one; nil when the last write worked or
    /// the retry is due.
    private var retryAt: UInt64?
    private var backoff = SQLiteBatchWriter.initialBackoff
    /// When the current failure began and the drop count then, for the recovery message; nil when healthy.
    private var failingSince: (nanos: UInt64, dropped: Int)?
    /// The connection's `synchronous` setting is FULL now (for a commit that carries feedback).
    private var synchronousFull = false

    /// The prune pass being run, a batch per turn of the loop (writer thread only).
    private var activePrune: (job: PruneJob, pruner: LogPruner)?
    /// Turns of the loop since the last prune batch, and how many a backlog may hold one off.
    private var turnsSincePrune = 0
    private static let pruneTurnsUnderBacklog = 8

    static let initialBackoff = 0.05
    static let maxBackoff = 2.0

    /// The writer thread's body: loop until `close()` and the queue is drained, then checkpoint and close.
    func run() {
        core.markCurrentThreadAsWriter()
        var batch: [RequestRecord] = []
        batch.reserveCapacity(core.maxBatch)
        var controls: [WriterControl] = []
        let maxBatch = core.maxBatch
        let intervalNanos = UInt64(core.flushInterval * 1e9)
        var lastDrain: UInt64 = 0
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            let retryAt = self.retryAt
            let holding = !held.isEmpty
            // A pass keeps the loop turning only while the storage takes writes (else it waits with the rows).
            let healthy = failingSince == nil
            var pruning = activePrune != nil && healthy
            var newPrune: PruneJob?
            let (step, maxSize) = core.state.withLock { s -> (Step, Int64??) in
                if let job = s.pendingPrune {
                    newPrune = job
                    s.pendingPrune = nil
                    pruning = healthy
                }
                let maxSize: Int64?? = s.maxSizeChanged ? .some(s.requestedMaxSize) : nil
                s.maxSizeChanged = false
                if let retryAt, now < retryAt, !s.closing, maxSize == nil {
                    // The storage failed and the retry is not due: refuse feedback and release flushes at once
                    // (nothing can be stored durably now); request rows stay queued.
                    s.writerIdle = true
                    s.refusing = true
                    controls.append(contentsOf: s.controls)
                    s.controls.removeAll()
                    s.pendingFeedback = 0
                    return (.refuse(retryAt - now), maxSize)
                }
                s.refusing = false
                // Group commit: request rows wait for the interval (or a full batch) so that one transaction
                // carries many of them; feedback, flush and close are served at once, and so is a prune pass
                // (its batches alternate with whatever has queued).
                let elapsed = now &- lastDrain
                if !holding, elapsed < intervalNanos, s.controls.isEmpty, !s.closing, s.queue.count < maxBatch, !pruning {
                    s.writerIdle = true
                    return (.wait(intervalNanos - elapsed), maxSize)
                }
                s.writerIdle = false
                if !holding {
                    s.queue.drain(into: &batch, max: maxBatch)
                    s.dequeuedTotal += UInt64(batch.count)
                }
                var taken = 0
                while taken < s.controls.count, s.controls[taken].after <= s.dequeuedTotal { taken += 1 }
                if taken > 0 {
                    for control in s.controls[0..<taken] {
                        if control.isFeedback { s.pendingFeedback -= 1 }
                        controls.append(control)
                    }
                    s.controls.removeFirst(taken)
                }
                if batch.isEmpty && controls.isEmpty && !holding {
                    if s.closing { return (.exit, maxSize) }
                    if pruning { return (.work, maxSize) }
                    s.writerIdle = true
                    return (.sleep, maxSize)
                }
                return (.work, maxSize)
            }
            if let newPrune { activePrune = (newPrune, LogPruner(plan: newPrune.plan)) }
            if let maxSize {
                applyMaxSize(maxSize)
                self.retryAt = nil  // a new cap may be room: try again now
            }
            switch step {
            case .sleep:
                _ = core.wakeup.wait(timeout: .now() + core.flushInterval)
            case .wait(let nanos):
                _ = core.wakeup.wait(timeout: .now() + .nanoseconds(Int(nanos)))
            case .refuse(let nanos):
                refuse(controls)
                controls.removeAll(keepingCapacity: true)
                _ = core.wakeup.wait(timeout: .now() + .nanoseconds(Int(min(nanos, UInt64(Int.max)))))
            case .exit:
                endPrune(interrupted: true)
                shutDown()
                return
            case .work:
                lastDrain = now
                // Write-time redaction runs once per row, here: rows held after a storage failure are already done.
                if !holding, let rewrite = core.rewrite { for i in batch.indices { rewrite(&batch[i]) } }
                let rows = holding ? held : batch
                process(rows, controls)
                batch.removeAll(keepingCapacity: true)
                controls.removeAll(keepingCapacity: true)
                if failingSince != nil && !held.isEmpty && core.isClosing { abandonOnClose() }
                // One prune batch per turn, after whatever had queued: requests and feedback never wait for more
                // than one short prune transaction. Behind a backlog (a quarter of the queue or more) the pass
                // yields: a batch only every `pruneTurnsUnderBacklog` turns, so retention never costs dropped rows
                // and still ends. While the storage fails, the pass waits with the rows.
                turnsSincePrune += 1
                if activePrune != nil, failingSince == nil,
                   turnsSincePrune >= Self.pruneTurnsUnderBacklog || core.state.withLock({ $0.queue.count }) < core.capacity / 4 {
                    turnsSincePrune = 0
                    pruneBatch()
                }
            }
        }
    }

    /// Runs the active prune pass's next batch in its own transaction; ends the pass after its last batch.
    private func pruneBatch() {
        guard var active = activePrune else { return }
        let before = active.pruner
        do throws(SQLiteError) {
            try begin()
            try active.pruner.step(connection)
            try run(Self.commitSQL)
        } catch {
            rollbackIfOpen()
            active.pruner = before
            active.pruner.interrupt(StoreError(error))
        }
        let delta = (active.pruner.result.requests - before.result.requests, active.pruner.result.feedback - before.result.feedback)
        if delta.0 > 0 { core.prunedRequests.wrappingAdd(delta.0, ordering: .relaxed) }
        if delta.1 > 0 { core.prunedFeedback.wrappingAdd(delta.1, ordering: .relaxed) }
        activePrune = active
        active.job.progress?(active.pruner.result)
        if active.pruner.done { endPrune(interrupted: false) }
    }

    /// Answers the active (and a still pending) prune pass; `interrupted` when the writer is closing.
    private func endPrune(interrupted: Bool) {
        let pending = core.state.withLock { s -> PruneJob? in
            let job = s.pendingPrune
            s.pendingPrune = nil
            s.pruneInProgress = false
            return job
        }
        if var active = activePrune {
            activePrune = nil
            if interrupted && !active.pruner.done { active.pruner.interrupt(nil) }
            active.job.completion(active.pruner.result)
        }
        if let pending {
            var result = PruneResult()
            result.interrupted = true
            pending.completion(result)
        }
    }

    /// Answers feedback `.storageUnavailable` and releases flush barriers without writing anything.
    private func refuse(_ controls: [WriterControl]) {
        let reason = StoreError.storageUnavailable(core.health.withLock { $0.lastFailure } ?? "the log cannot be written")
        for control in controls {
            switch control {
            case let .feedback(ticket, _): if ticket.beginWriting() { ticket.answer(.failure(reason)) }
            case let .barrier(_, semaphore): semaphore.signal()
            }
        }
    }

    private func process(_ batch: [RequestRecord], _ controls: [WriterControl]) {
        // Feedback whose deadline already answered its caller is skipped: that caller was told it failed.
        var tickets: [FeedbackTicket] = []
        for case let .feedback(ticket, _) in controls where ticket.beginWriting() { tickets.append(ticket) }
        // Feedback is acknowledged only after this commit: with `full` durability the commit fsyncs the WAL.
        setSynchronous(full: core.feedbackDurability == .full && !tickets.isEmpty)
        let outcome = write(batch, tickets.map(\.record))
        if outcome.written > 0 { core.written.wrappingAdd(outcome.written, ordering: .relaxed) }
        core.recordWriteErrors(outcome.failed, last: outcome.lastError.map(StoreError.init))
        if let failure = outcome.storageFailure {
            held = outcome.unwritten
            storageFailed(failure)
        } else if outcome.attempted {
            held = []
            if failingSince != nil { recovered(written: batch.count) }
        }
        for (ticket, result) in zip(tickets, outcome.feedbackResults) { ticket.answer(result) }
        for case let .barrier(_, semaphore) in controls { semaphore.signal() }
    }

    private struct Outcome {
        var written = 0
        var failed = 0
        var lastError: SQLiteError?
        /// One per feedback submitted to `write`.
        var feedbackResults: [Result<FeedbackSubmission, StoreError>] = []
        /// The storage refused the write: `unwritten` are the request rows to hold and retry.
        var storageFailure: SQLiteError?
        var unwritten: [RequestRecord] = []
        /// Something was written to the storage (or tried): an empty write proves nothing about it.
        var attempted = true
    }

    /// Requests first, then feedback, in one transaction. If anything fails with a SQLite error the
    /// transaction is rolled back and every row is retried on its own, so one bad row costs only itself;
    /// when the storage itself refuses (full, read-only, I/O error) nothing is retried now: the rows are
    /// handed back to be held, and the feedback is answered `.storageUnavailable`.
    private func write(_ batch: [RequestRecord], _ feedback: [FeedbackRecord]) -> Outcome {
        if batch.isEmpty && feedback.isEmpty { return Outcome(attempted: false) }
        do throws(SQLiteError) {
            try begin()
            for (i, record) in batch.enumerated() {
                try insert(record)
                // Give the CPU back between slices of a big batch: on a machine with few cores a long insert
                // burst would otherwise hold a core for a whole scheduler slice (milliseconds) while request
                // threads wait for it, which shows up directly in tail latency.
                if i & 31 == 31 { sched_yield() }
            }
            var results: [Result<FeedbackSubmission, StoreError>] = []
            results.reserveCapacity(feedback.count)
            for item in feedback { results.append(try apply(item)) }
            try run(Self.commitSQL)
            return Outcome(written: batch.count, feedbackResults: results)
        } catch {
            rollbackIfOpen()
            if error.storageFailure != nil {
                return Outcome(feedbackResults: feedback.map { _ in .failure(StoreError(error)) },
                               storageFailure: error, unwritten: batch)
            }
            return writeOneByOne(batch, feedback, batchError: error)
        }
    }

    private func writeOneByOne(_ batch: [RequestRecord], _ feedback: [FeedbackRecord], batchError: SQLiteError) -> Outcome {
        var outcome = Outcome()
        // A lock held elsewhere past the busy timeout (only given up on while closing) would make every
        // row wait the full timeout again; fail the rest at once instead.
        var giveUp: SQLiteError? = batchError.isBusy ? batchError : nil
        for (index, record) in batch.enumerated() {
            if let giveUp {
                outcome.failed += 1
                outcome.lastError = giveUp
                continue
            }
            do throws(SQLiteError) {
                try insert(record)
                outcome.written += 1
            } catch where error.storageFailure != nil {
                // The storage gave out part way: hold this row and the rest for the retry.
                outcome.storageFailure = error
                outcome.unwritten = Array(batch[index...])
                break
            } catch {
                outcome.failed += 1
                outcome.lastError = error
                if error.isBusy { giveUp = error }
            }
        }
        for item in feedback {
            if let failure = outcome.storageFailure ?? giveUp {
                outcome.feedbackResults.append(.failure(StoreError(failure)))
                continue
            }
            do throws(SQLiteError) {
                try begin()
                let result = try apply(item)
                try run(Self.commitSQL)
                outcome.feedbackResults.append(result)
            } catch {
                rollbackIfOpen()
                if error.storageFailure != nil { outcome.storageFailure = error }
                outcome.feedbackResults.append(.failure(StoreError(error)))
            }
        }
        return outcome
    }

    /// A write failed for lack of storage: count it, say so once per failure, and schedule the retry.
    private func storageFailed(_ error: SQLiteError) {
        let reason = error.storageFailure ?? .ioError
        let now = DispatchTime.now().uptimeNanoseconds
        let first = failingSince == nil
        if first {
            failingSince = (now, core.dropped.load(ordering: .relaxed))
            backoff = Self.initialBackoff
        } else {
            backoff = min(backoff * 2, Self.maxBackoff)
        }
        retryAt = now + UInt64(backoff * 1e9)
        let held = held.count
        core.health.withLock { h in
            h.healthy = false
            h.heldRows = held
            h.storageErrors[reason.rawValue, default: 0] += 1
            h.lastFailure = error.description
        }
        if first {
            core.report("flywheel: warning: cannot write the log \(connection.path) (\(reason.rawValue): \(error)); "
                + "serving on: request rows wait in memory (up to \(core.capacity + core.maxBatch), then they are dropped "
                + "and counted), feedback is refused with 503 and Retry-After; retrying with backoff")
        }
    }

    /// A write worked after failures: the log is healthy again; say what happened meanwhile.
    private func recovered(written: Int) {
        guard let since = failingSince else { return }
        failingSince = nil
        retryAt = nil
        backoff = Self.initialBackoff
        core.health.withLock { h in
            h.healthy = true
            h.heldRows = 0
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - since.nanos) / 1e9
        let dropped = core.dropped.load(ordering: .relaxed) - since.dropped
        let waiting = written + core.state.withLock { $0.queue.count }
        core.report("flywheel: the log \(connection.path) is writing again after \(String(format: "%.1f", seconds)) s: "
            + "the \(waiting) request rows kept in memory meanwhile are being written; \(dropped) were dropped (queue full)")
    }

    /// `close()` while the storage still refuses writes: give up on what is held and queued rather than retry
    /// forever; the rows are counted as write errors and feedback is refused.
    private func abandonOnClose() {
        let (queued, controls) = core.state.withLock { s -> (Int, [WriterControl]) in
            let n = s.queue.count
            var rest: [RequestRecord] = []
            s.queue.drain(into: &rest, max: n)
            s.dequeuedTotal += UInt64(n)
            let controls = s.controls
            s.controls.removeAll()
            s.pendingFeedback = 0
            return (n, controls)
        }
        let lost = held.count + queued
        core.recordWriteErrors(lost, last: core.lastError.withLock { $0 })
        held = []
        refuse(controls)
        core.report("flywheel: warning: closing with the log \(connection.path) still unwritable: \(lost) request rows lost")
    }

    /// `PRAGMA synchronous` FULL for a commit that carries feedback (with `feedback_durability: full`), NORMAL
    /// otherwise. In WAL mode FULL syncs the WAL at every commit; NORMAL only at checkpoints.
    private func setSynchronous(full: Bool) {
        guard full != synchronousFull else { return }
        do throws(SQLiteError) {
            try connection.execute(full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
            synchronousFull = full
        } catch {
            // Leaves the setting as it was; the write that follows reports any real trouble.
        }
    }

    /// Caps the database at `bytes` (`PRAGMA max_page_count`; nil lifts the cap). Writes that would grow it
    /// beyond fail with SQLITE_FULL, which the writer handles like a full disk. SQLite never sets the cap below
    /// the current size: a smaller cap means "full now".
    func applyMaxSize(_ bytes: Int64?) {
        do throws(SQLiteError) {
            let pageSize = max(512, try connection.scalarInt64("PRAGMA page_size"))
            let pages = bytes.map { max(1, $0 / pageSize) } ?? 0xFFFF_FFFE
            _ = try connection.scalarInt64("PRAGMA max_page_count = \(pages)")
        } catch {
            core.report("flywheel: warning: cannot set the log's size cap: \(error)")
        }
    }

    /// `BEGIN IMMEDIATE`, waiting out other writers: each attempt waits the busy timeout, and a busy
    /// database is retried until `close()` is called (meanwhile the bounded queue fills and drops).
    private func begin() throws(SQLiteError) {
        while true {
            do throws(SQLiteError) {
                try run(Self.beginSQL)
                return
            } catch where error.isBusy && !core.isClosing {
                continue
            }
        }
    }

    private func run(_ sql: String) throws(SQLiteError) {
        try connection.withStatement(sql) { s throws(SQLiteError) in _ = try s.step() }
    }

    private func rollbackIfOpen() {
        if !connection.isAutocommit { try? run(Self.rollbackSQL) }
    }

    /// Inserts one request. A resent id is stored as `id#2`, `id#3`, ... so no row is lost; the first row keeps
    /// the plain id, which is what feedback refers to.
    ///
    /// Constant work per row: the plain insert skips a taken id (`DO NOTHING`) instead of failing, and the
    /// next suffix comes from one upsert on `request_id_suffixes`. The loop only repeats when `id#n` itself is
    /// taken (a client sent that literal id, or a database renamed rows before that table existed); each pass
    /// moves the suffix past one such row, so the total extra work is bounded by those rows, once.
    private func insert(_ record: RequestRecord) throws(SQLiteError) {
        if try insert(record, as: record.id) { return }
        while true {
            let suffix = try connection.withStatement(Self.nextSuffixSQL) { s throws(SQLiteError) -> Int64 in
                try s.bind(record.id, at: 1)
                guard try s.step() else {
                    throw SQLiteError(code: 1 /* SQLITE_ERROR */, message: "upsert returned no suffix", sql: s.sql)
                }
                return s.int64(0)
            }
            if try insert(record, as: "\(record.id)#\(suffix)") { return }
        }
    }

    /// Inserts `record` under `id`; false (and nothing written) when that id is already taken.
    private func insert(_ record: RequestRecord, as id: String) throws(SQLiteError) -> Bool {
        try connection.withStatement(Self.insertRequestSQL) { s throws(SQLiteError) in
            try RequestColumns.bind(record, id: id, to: s)
            _ = try s.step()
        }
        return connection.changes > 0
    }

    /// Applies one feedback row inside the current transaction. Domain outcomes (unknown request,
    /// idempotency conflict) are returned; SQLite failures are thrown.
    private func apply(_ feedback: FeedbackRecord) throws(SQLiteError) -> Result<FeedbackSubmission, StoreError> {
        if let key = feedback.idempotencyKey {
            let existing = try connection.withStatement(Self.feedbackByKeySQL) { s throws(SQLiteError) -> StoredFeedback? in
                try s.bind(key, at: 1)
                return try s.step() ? try FeedbackColumns.read(s) : nil
            }
            if let existing {
                if existing.record.isSameSubmission(as: feedback) {
                    return .success(FeedbackSubmission(feedbackID: existing.rowID, duplicate: true))
                }
                return .failure(.idempotencyConflict(key))
            }
        }
        // The requests it is stored against: the one it names, or, for episode feedback, every request of the
        // episode logged so far (the idempotency key on the first row).
        let ids: [String]
        if let episode = feedback.episodeID {
            ids = try connection.withStatement(Self.episodeRequestsSQL) { s throws(SQLiteError) -> [String] in
                try s.bind(episode, at: 1)
                var ids: [String] = []
                while try s.step() { ids.append(s.string(0)) }
                return ids
            }
            guard !ids.isEmpty else { return .failure(.unknownRequest("episode:" + episode)) }
        } else {
            let known = try connection.withStatement(Self.requestExistsSQL) { s throws(SQLiteError) in
                try s.bind(feedback.requestID, at: 1)
                return try s.step()
            }
            guard known else { return .failure(.unknownRequest(feedback.requestID)) }
            ids = [feedback.requestID]
        }
        var firstRowID: Int64 = 0
        for (i, id) in ids.enumerated() {
            var row = feedback
            row.requestID = id
            if i > 0 { row.idempotencyKey = nil }
            try connection.withStatement(FeedbackColumns.insertSQL) { s throws(SQLiteError) in
                try FeedbackColumns.bind(row, to: s)
                _ = try s.step()
            }
            if i == 0 { firstRowID = connection.lastInsertRowID }
        }
        var submission = FeedbackSubmission(feedbackID: firstRowID, duplicate: false)
        submission.rows = ids.count
        return .success(submission)
    }

    /// Everything is committed: fold the WAL back into the main file, close, and release `close()` callers.
    private func shutDown() {
        try? connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        let waiters = core.state.withLock { s -> [DispatchSemaphore] in
            s.finished = true
            let waiters = s.closeWaiters
            s.closeWaiters = []
            return waiters
        }
        for waiter in waiters { waiter.signal() }
    }
}
