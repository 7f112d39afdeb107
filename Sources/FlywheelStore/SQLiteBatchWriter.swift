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

    private enum Step { case work, sleep, wait(UInt64), exit }

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
            let step = core.state.withLock { s -> Step in
                // Group commit: request rows wait for the interval (or a full batch) so that one transaction
                // carries many of them; feedback, flush and close are served at once.
                let elapsed = now &- lastDrain
                if elapsed < intervalNanos, s.controls.isEmpty, !s.closing, s.queue.count < maxBatch {
                    s.writerIdle = true
                    return .wait(intervalNanos - elapsed)
                }
                s.writerIdle = false
                s.queue.drain(into: &batch, max: maxBatch)
                s.dequeuedTotal += UInt64(batch.count)
                var taken = 0
                while taken < s.controls.count, s.controls[taken].after <= s.dequeuedTotal { taken += 1 }
                if taken > 0 {
                    for control in s.controls[0..<taken] {
                        if control.isFeedback { s.pendingFeedback -= 1 }
                        controls.append(control)
                    }
                    s.controls.removeFirst(taken)
                }
                if batch.isEmpty && controls.isEmpty {
                    if s.closing { return .exit }
                    s.writerIdle = true
                    return .sleep
                }
                return .work
            }
            switch step {
            case .sleep:
                _ = core.wakeup.wait(timeout: .now() + core.flushInterval)
            case .wait(let nanos):
                _ = core.wakeup.wait(timeout: .now() + .nanoseconds(Int(nanos)))
            case .exit:
                shutDown()
                return
            case .work:
                lastDrain = now
                process(batch, controls)
                batch.removeAll(keepingCapacity: true)
                controls.removeAll(keepingCapacity: true)
            }
        }
    }

    private func process(_ batch: [RequestRecord], _ controls: [WriterControl]) {
        // Feedback whose deadline already answered its caller is skipped: that caller was told it failed.
        var tickets: [FeedbackTicket] = []
        for case let .feedback(ticket, _) in controls where ticket.beginWriting() { tickets.append(ticket) }
        let outcome = write(batch, tickets.map(\.record))
        if outcome.written > 0 { core.written.wrappingAdd(outcome.written, ordering: .relaxed) }
        core.recordWriteErrors(outcome.failed, last: outcome.lastError.map(StoreError.init))
        for (ticket, result) in zip(tickets, outcome.feedbackResults) { ticket.answer(result) }
        for case let .barrier(_, semaphore) in controls { semaphore.signal() }
    }

    private struct Outcome {
        var written = 0
        var failed = 0
        var lastError: SQLiteError?
        var feedbackResults: [Result<FeedbackSubmission, StoreError>] = []
    }

    /// Requests first, then feedback, in one transaction. If anything fails with a SQLite error the
    /// transaction is rolled back and every row is retried on its own, so one bad row costs only itself.
    private func write(_ batch: [RequestRecord], _ feedback: [FeedbackRecord]) -> Outcome {
        if batch.isEmpty && feedback.isEmpty { return Outcome() }
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
            return writeOneByOne(batch, feedback, batchError: error)
        }
    }

    private func writeOneByOne(_ batch: [RequestRecord], _ feedback: [FeedbackRecord], batchError: SQLiteError) -> Outcome {
        var outcome = Outcome()
        // A lock held elsewhere past the busy timeout (only given up on while closing) would make every
        // row wait the full timeout again; fail the rest at once instead.
        var giveUp: SQLiteError? = batchError.isBusy ? batchError : nil
        for record in batch {
            if let giveUp {
                outcome.failed += 1
                outcome.lastError = giveUp
                continue
            }
            do throws(SQLiteError) {
                try insert(record)
                outcome.written += 1
            } catch {
                outcome.failed += 1
                outcome.lastError = error
                if error.isBusy { giveUp = error }
            }
        }
        for item in feedback {
            if let giveUp {
                outcome.feedbackResults.append(.failure(StoreError(giveUp)))
                continue
            }
            do throws(SQLiteError) {
                try begin()
                let result = try apply(item)
                try run(Self.commitSQL)
                outcome.feedbackResults.append(result)
            } catch {
                rollbackIfOpen()
                outcome.feedbackResults.append(.failure(StoreError(error)))
            }
        }
        return outcome
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
