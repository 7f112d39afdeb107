/// One prune pass over the `requests` table, a batch at a time: walks the `(created_at, id)` index from the
/// oldest row up to `plan.scanBefore`, asks the plan for each row's cutoff, and deletes the rows past it with
/// everything keyed by their id (their feedback, their resend-suffix counter). The cursor lives here, so
/// batches resume after the rows they kept, and a row kept once is examined once per pass.
///
/// Thread rule: used by one thread with its own connection (the log writer's, or the CLI's for a dry run).
struct LogPruner {
    let plan: RetentionPlan
    /// Counting only: nothing is deleted and no transaction is opened.
    let dryRun: Bool
    private(set) var result = PruneResult()
    private(set) var done = false
    private var cursor: (createdAt: Int64, id: String)?

    init(plan: RetentionPlan, dryRun: Bool = false) {
        self.plan = plan
        self.dryRun = dryRun
    }

    private static let firstBatchSQL = """
        SELECT id, created_at, model_requested, EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = requests.id),
               CASE WHEN shadow_of IS NULL THEN client_key_id END, coalesce(total_tokens, 0), coalesce(cost_usd, 0)
        FROM requests WHERE created_at < ? ORDER BY created_at, id LIMIT ?
        """
    private static let nextBatchSQL = """
        SELECT id, created_at, model_requested, EXISTS (SELECT 1 FROM feedback f WHERE f.request_id = requests.id),
               CASE WHEN shadow_of IS NULL THEN client_key_id END, coalesce(total_tokens, 0), coalesce(cost_usd, 0)
        FROM requests WHERE created_at < ? AND (created_at, id) > (?, ?) ORDER BY created_at, id LIMIT ?
        """
    static let deleteFeedbackSQL = "DELETE FROM feedback WHERE request_id = ?"
    static let deleteSuffixSQL = "DELETE FROM request_id_suffixes WHERE id = ?"
    static let deleteRequestSQL = "DELETE FROM requests WHERE id = ?"
    /// A pruned keyed request's usage, kept per key so budgets and `keys list` count over the key's life.
    static let carryKeyUsageSQL = """
        INSERT INTO key_pruned_usage (key_id, requests, total_tokens, cost_usd) VALUES (?, 1, ?, ?)
        ON CONFLICT(key_id) DO UPDATE SET requests = requests + 1, total_tokens = total_tokens + excluded.total_tokens,
                                          cost_usd = cost_usd + excluded.cost_usd
        """

    /// Examines the next batch and, unless dry, deletes what it selects; the caller wraps it in a transaction
    /// (the writer's `BEGIN IMMEDIATE ... COMMIT`). Sets `done` after the last row.
    mutating func step(_ connection: SQLiteConnection) throws(SQLiteError) {
        guard !done else { return }
        let limit = Int64(plan.batchSize)
        let scanBefore = plan.scanBefore
        let cursor = self.cursor
        var examined: [(id: String, createdAt: Int64, model: String?, hasFeedback: Bool, keyID: String?, tokens: Int64, cost: Double)] = []
        examined.reserveCapacity(plan.batchSize)
        try connection.withStatement(cursor == nil ? Self.firstBatchSQL : Self.nextBatchSQL) { s throws(SQLiteError) in
            try s.bind(scanBefore, at: 1)
            if let cursor {
                try s.bind(cursor.createdAt, at: 2)
                try s.bind(cursor.id, at: 3)
                try s.bind(limit, at: 4)
            } else {
                try s.bind(limit, at: 2)
            }
            while try s.step() {
                examined.append((s.string(0), s.int64(1), s.optionalString(2), s.int64(3) != 0, s.optionalString(4), s.int64(5), s.double(6)))
            }
        }
        result.examined += examined.count
        result.batches += 1
        if let last = examined.last { self.cursor = (last.createdAt, last.id) }
        if examined.count < plan.batchSize { done = true }
        for row in examined {
            guard let cutoff = plan.cutoff(row.model, row.hasFeedback), row.createdAt < cutoff else { continue }
            result.requests += 1
            if dryRun {
                if row.hasFeedback { result.feedback += try Int(connection.withStatement("SELECT count(*) FROM feedback WHERE request_id = ?") { s throws(SQLiteError) in
                    try s.bind(row.id, at: 1)
                    return try s.step() ? s.int64(0) : 0
                }) }
                continue
            }
            if row.hasFeedback {
                try connection.withStatement(Self.deleteFeedbackSQL) { s throws(SQLiteError) in
                    try s.bind(row.id, at: 1)
                    _ = try s.step()
                }
                result.feedback += connection.changes
            }
            try connection.withStatement(Self.deleteSuffixSQL) { s throws(SQLiteError) in
                try s.bind(row.id, at: 1)
                _ = try s.step()
            }
            if let keyID = row.keyID {
                try connection.withStatement(Self.carryKeyUsageSQL) { s throws(SQLiteError) in
                    try s.bind(keyID, at: 1)
                    try s.bind(row.tokens, at: 2)
                    try s.bind(row.cost, at: 3)
                    _ = try s.step()
                }
            }
            try connection.withStatement(Self.deleteRequestSQL) { s throws(SQLiteError) in
                try s.bind(row.id, at: 1)
                _ = try s.step()
            }
        }
    }

    /// Marks the pass as ended early.
    mutating func interrupt(_ error: StoreError?) {
        done = true
        result.interrupted = true
        result.error = error
    }
}
