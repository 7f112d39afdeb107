/// The SQLite `LogQueries`: read-only access to the log file.
///
/// Safe to use while the daemon writes: WAL gives each query a consistent snapshot and readers never
/// block the writer. Thread rule: one thread — the connection is not thread-safe, so a `SQLiteLogReader`
/// must not be shared across threads (it is deliberately not `Sendable`).
public final class SQLiteLogReader: LogQueries {
    private let connection: SQLiteConnection

    /// Opens `path` read-only.
    /// - Throws: `.databaseMissing` if there is no such file, `.schemaTooNew` if a newer Flywheel wrote it,
    ///   `.schemaTooOld` if the daemon has not yet migrated it, `.backend` otherwise.
    public init(path: String) throws(StoreError) {
        connection = try StoreDatabase.openForReading(path: path)
    }

    deinit { connection.close() }

    /// Runs `body` on the reader's connection, SQLite errors translated (for queries kept beside their record types).
    func withConnection<T>(_ body: (SQLiteConnection) throws(SQLiteError) -> T) throws(StoreError) -> T {
        try translatingSQLiteErrors { () throws(SQLiteError) in try body(connection) }
    }

    public func latestRequests(limit: Int, filter: RequestFilter) throws(StoreError) -> [StoredRequest] {
        if let model = filter.model { return try latestRequests(limit: limit, model: model, filter: filter) }
        let conditions = RequestConditions(filter)
        let sql = "SELECT * FROM (SELECT \(RequestColumns.selectList) FROM requests\(conditions.whereClause) ORDER BY row_id DESC LIMIT ?) ORDER BY row_id ASC"
        return try queryRequests(sql) { s throws(SQLiteError) in
            let next = try conditions.bind(s, from: 1)
            try s.bind(Int64(max(0, limit)), at: next)
        }
    }

    /// The newest rows of a model, requested or served: the newest `limit` of each side, walked backwards on its
    /// own index (`requests_model_requested`, `requests_model_served`), then merged. One `OR` over both columns
    /// would walk the whole table for a model with few rows (or none), newest first.
    private func latestRequests(limit: Int, model: String, filter: RequestFilter) throws(StoreError) -> [StoredRequest] {
        var rest = filter
        rest.model = nil
        let conditions = RequestConditions(rest, extra: ["model_requested = ?"])
        let served = RequestConditions(rest, extra: ["model_served = ?"])
        let sql = """
            SELECT * FROM (SELECT \(RequestColumns.selectList) FROM requests WHERE row_id IN (
                SELECT row_id FROM (SELECT row_id FROM requests\(conditions.whereClause) ORDER BY row_id DESC LIMIT ?)
                UNION ALL
                SELECT row_id FROM (SELECT row_id FROM requests\(served.whereClause) ORDER BY row_id DESC LIMIT ?))
            ORDER BY row_id DESC LIMIT ?) ORDER BY row_id ASC
            """
        let limit = Int64(max(0, limit))
        return try queryRequests(sql) { s throws(SQLiteError) in
            try s.bind(model, at: 1)
            var next = try conditions.bind(s, from: 2)
            try s.bind(limit, at: next)
            try s.bind(model, at: next + 1)
            next = try served.bind(s, from: next + 2)
            try s.bind(limit, at: next)
            try s.bind(limit, at: next + 1)
        }
    }

    public func requests(afterRowID: Int64, filter: RequestFilter, limit: Int) throws(StoreError) -> [StoredRequest] {
        let conditions = RequestConditions(filter, extra: ["row_id > ?"])
        let sql = "SELECT \(RequestColumns.selectList) FROM requests\(conditions.whereClause) ORDER BY row_id ASC LIMIT ?"
        return try queryRequests(sql) { s throws(SQLiteError) in
            try s.bind(afterRowID, at: 1)
            let next = try conditions.bind(s, from: 2)
            try s.bind(Int64(max(0, limit)), at: next)
        }
    }

    /// What a prune pass with `plan` would delete now, counted without deleting (`flywheel prune --dry-run`).
    public func prunable(_ plan: RetentionPlan) throws(StoreError) -> PruneResult {
        var pruner = LogPruner(plan: plan, dryRun: true)
        try translatingSQLiteErrors { () throws(SQLiteError) in
            while !pruner.done { try pruner.step(connection) }
        }
        return pruner.result
    }

    public func request(id: String) throws(StoreError) -> RequestRecord? {
        let sql = "SELECT \(RequestColumns.selectList) FROM requests WHERE id = ?"
        return try queryRequests(sql) { s throws(SQLiteError) in try s.bind(id, at: 1) }.first?.record
    }

    public func feedback(forRequest id: String) throws(StoreError) -> [FeedbackRecord] {
        let sql = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE request_id = ? ORDER BY row_id ASC"
        return try queryFeedback(sql) { s throws(SQLiteError) in try s.bind(id, at: 1) }.map(\.record)
    }

    public func latestFeedback(limit: Int) throws(StoreError) -> [StoredFeedback] {
        let sql = "SELECT * FROM (SELECT \(FeedbackColumns.selectList) FROM feedback ORDER BY row_id DESC LIMIT ?) ORDER BY row_id ASC"
        return try queryFeedback(sql) { s throws(SQLiteError) in try s.bind(Int64(max(0, limit)), at: 1) }
    }

    public func feedback(afterRowID: Int64, limit: Int) throws(StoreError) -> [StoredFeedback] {
        let sql = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE row_id > ? ORDER BY row_id ASC LIMIT ?"
        return try queryFeedback(sql) { s throws(SQLiteError) in
            try s.bind(afterRowID, at: 1)
            try s.bind(Int64(max(0, limit)), at: 2)
        }
    }

    public func maxRequestRowID() throws(StoreError) -> Int64 {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.scalarInt64("SELECT coalesce(max(row_id), 0) FROM requests")
        }
    }

    public func maxFeedbackRowID() throws(StoreError) -> Int64 {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.scalarInt64("SELECT coalesce(max(row_id), 0) FROM feedback")
        }
    }

    public func requestCount(filter: RequestFilter) throws(StoreError) -> Int {
        let conditions = RequestConditions(filter)
        let sql = "SELECT count(*) FROM requests\(conditions.whereClause)"
        return try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement(sql) { s throws(SQLiteError) in
                _ = try conditions.bind(s, from: 1)
                return try s.step() ? s.int(0) : 0
            }
        }
    }

    /// Walks the `requests_created_at_id` index from the cursor (a row-value comparison SQLite turns into
    /// an index range), so a page costs its own rows plus those the filter skips, never an OFFSET scan.
    public func requestPage(_ query: RequestQuery) throws(StoreError) -> RequestPage {
        let ascending = query.order == .oldestFirst
        let conditions = RequestConditions(query.filter, extra: query.after == nil ? [] : [ascending ? "(created_at, id) > (?, ?)" : "(created_at, id) < (?, ?)"])
        let direction = ascending ? "ASC" : "DESC"
        let sql = "SELECT \(RequestColumns.selectList) FROM requests\(conditions.whereClause) ORDER BY created_at \(direction), id \(direction) LIMIT ?"
        let limit = max(0, query.limit)
        let rows = try queryRequests(sql) { s throws(SQLiteError) in
            var index: Int32 = 1
            if let after = query.after {
                try s.bind(after.createdAtMillis, at: 1)
                try s.bind(after.id, at: 2)
                index = 3
            }
            let next = try conditions.bind(s, from: index)
            try s.bind(Int64(limit), at: next)
        }
        var feedback: [String: [FeedbackRecord]] = [:]
        if query.includeFeedback && !rows.isEmpty {
            feedback = try feedbackByRequest(ids: rows.map(\.record.id))
        }
        let requests = rows.map { RequestWithFeedback(rowID: $0.rowID, record: $0.record, feedback: feedback[$0.record.id] ?? []) }
        let next = rows.count == limit && limit > 0
            ? rows.last.map { RequestCursor(createdAtMillis: $0.record.createdAtMillis, id: $0.record.id) } : nil
        return RequestPage(requests: requests, next: next)
    }

    // MARK: Internals

    /// Feedback on the given requests, grouped by request id, each group oldest first. One query whatever
    /// the page size: the ids go in as one JSON array parameter.
    private func feedbackByRequest(ids: [String]) throws(StoreError) -> [String: [FeedbackRecord]] {
        let sql = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE request_id IN (SELECT value FROM json_each(?)) ORDER BY row_id ASC"
        let rows = try queryFeedback(sql) { s throws(SQLiteError) in try s.bind(TagsJSON.encode(ids), at: 1) }
        var grouped: [String: [FeedbackRecord]] = [:]
        for row in rows { grouped[row.record.requestID, default: []].append(row.record) }
        return grouped
    }

    private func queryRequests(_ sql: String, bind: (SQLiteStatement) throws(SQLiteError) -> Void) throws(StoreError) -> [StoredRequest] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement(sql) { s throws(SQLiteError) in
                try bind(s)
                var rows: [StoredRequest] = []
                while try s.step() { rows.append(RequestColumns.read(s)) }
                return rows
            }
        }
    }

    private func queryFeedback(_ sql: String, bind: (SQLiteStatement) throws(SQLiteError) -> Void) throws(StoreError) -> [StoredFeedback] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement(sql) { s throws(SQLiteError) in
                try bind(s)
                var rows: [StoredFeedback] = []
                while try s.step() { rows.append(try FeedbackColumns.read(s)) }
                return rows
            }
        }
    }
}
