/// Read-only access to the log for the operator CLI (`flywheel tail`, `flywheel show`).
///
/// Safe to use while the daemon writes: WAL gives each query a consistent snapshot and readers never
/// block the writer. Thread rule: one thread — the connection is not thread-safe, so a `LogReader` must
/// not be shared across threads (it is deliberately not `Sendable`).
public final class LogReader {
    private let connection: SQLiteConnection

    /// Opens `path` read-only.
    /// - Throws: `.databaseMissing` if there is no such file, `.schemaTooNew` if a newer Flywheel wrote it,
    ///   `.sqlite` otherwise (including a database older than this build, which the daemon migrates).
    public init(path: String) throws {
        connection = try StoreDatabase.openForReading(path: path)
    }

    deinit { connection.close() }

    /// The newest `limit` requests matching `filter`, returned oldest first (ready to print as a tail).
    public func latestRequests(limit: Int, filter: RequestFilter) throws -> [StoredRequest] {
        let (whereSQL, bind) = Self.conditions(filter)
        let sql = "SELECT * FROM (SELECT \(RequestColumns.selectList) FROM requests\(whereSQL.isEmpty ? "" : " WHERE " + whereSQL) ORDER BY row_id DESC LIMIT ?) ORDER BY row_id ASC"
        return try queryRequests(sql) { s throws(StoreError) in
            let next = try bind(s, 1)
            try s.bind(Int64(max(0, limit)), at: next)
        }
    }

    /// Requests with row id greater than `afterRowID` matching `filter`, ascending, at most `limit`.
    /// For follow mode: remember the last row id returned and ask again.
    public func requests(afterRowID: Int64, filter: RequestFilter, limit: Int) throws -> [StoredRequest] {
        let (whereSQL, bind) = Self.conditions(filter)
        let sql = "SELECT \(RequestColumns.selectList) FROM requests WHERE row_id > ?\(whereSQL.isEmpty ? "" : " AND " + whereSQL) ORDER BY row_id ASC LIMIT ?"
        return try queryRequests(sql) { s throws(StoreError) in
            try s.bind(afterRowID, at: 1)
            let next = try bind(s, 2)
            try s.bind(Int64(max(0, limit)), at: next)
        }
    }

    /// The request with exactly this id (a resent id's later copies are `id#2`, `id#3`, ...), or nil.
    public func request(id: String) throws -> RequestRecord? {
        let sql = "SELECT \(RequestColumns.selectList) FROM requests WHERE id = ?"
        return try queryRequests(sql) { s throws(StoreError) in try s.bind(id, at: 1) }.first?.record
    }

    /// All feedback on request `id`, ascending.
    public func feedback(forRequest id: String) throws -> [FeedbackRecord] {
        let sql = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE request_id = ? ORDER BY row_id ASC"
        return try queryFeedback(sql) { s throws(StoreError) in try s.bind(id, at: 1) }.map(\.record)
    }

    /// The newest `limit` feedback rows, oldest first.
    public func latestFeedback(limit: Int) throws -> [StoredFeedback] {
        let sql = "SELECT * FROM (SELECT \(FeedbackColumns.selectList) FROM feedback ORDER BY row_id DESC LIMIT ?) ORDER BY row_id ASC"
        return try queryFeedback(sql) { s throws(StoreError) in try s.bind(Int64(max(0, limit)), at: 1) }
    }

    /// Feedback rows with row id greater than `afterRowID`, ascending, at most `limit`.
    public func feedback(afterRowID: Int64, limit: Int) throws -> [StoredFeedback] {
        let sql = "SELECT \(FeedbackColumns.selectList) FROM feedback WHERE row_id > ? ORDER BY row_id ASC LIMIT ?"
        return try queryFeedback(sql) { s throws(StoreError) in
            try s.bind(afterRowID, at: 1)
            try s.bind(Int64(max(0, limit)), at: 2)
        }
    }

    /// The highest request row id (0 for an empty log). Start follow mode from here.
    public func maxRequestRowID() throws -> Int64 {
        try connection.scalarInt64("SELECT coalesce(max(row_id), 0) FROM requests")
    }

    /// The highest feedback row id (0 when there is none).
    public func maxFeedbackRowID() throws -> Int64 {
        try connection.scalarInt64("SELECT coalesce(max(row_id), 0) FROM feedback")
    }

    /// How many requests match `filter`. (Addition to the planned API, for summaries.)
    public func requestCount(filter: RequestFilter = RequestFilter()) throws -> Int {
        let (whereSQL, bind) = Self.conditions(filter)
        let sql = "SELECT count(*) FROM requests\(whereSQL.isEmpty ? "" : " WHERE " + whereSQL)"
        return try connection.withStatement(sql) { s throws(StoreError) in
            _ = try bind(s, 1)
            return try s.step() ? s.int(0) : 0
        }
    }

    // MARK: Internals

    private typealias Binder = (SQLiteStatement, Int32) throws(StoreError) -> Int32

    /// The WHERE conditions for `filter` (empty when it filters nothing) and a binder that binds its
    /// parameters from the given index, returning the next free index. The SQL text depends only on which
    /// fields are set, so the statement cache stays small.
    private static func conditions(_ filter: RequestFilter) -> (String, Binder) {
        var clauses: [String] = []
        if filter.model != nil { clauses.append("(model_requested = ? OR model_served = ?)") }
        if filter.route != nil { clauses.append("route = ?") }
        if filter.errorsOnly { clauses.append("(status >= 400 OR error_type IS NOT NULL)") }
        let model = filter.model
        let route = filter.route
        let binder: Binder = { s, start throws(StoreError) in
            var index = start
            if let model {
                try s.bind(model, at: index)
                try s.bind(model, at: index + 1)
                index += 2
            }
            if let route {
                try s.bind(route, at: index)
                index += 1
            }
            return index
        }
        return (clauses.joined(separator: " AND "), binder)
    }

    private func queryRequests(_ sql: String, bind: (SQLiteStatement) throws(StoreError) -> Void) throws(StoreError) -> [StoredRequest] {
        try connection.withStatement(sql) { s throws(StoreError) in
            try bind(s)
            var rows: [StoredRequest] = []
            while try s.step() { rows.append(RequestColumns.read(s)) }
            return rows
        }
    }

    private func queryFeedback(_ sql: String, bind: (SQLiteStatement) throws(StoreError) -> Void) throws(StoreError) -> [StoredFeedback] {
        try connection.withStatement(sql) { s throws(StoreError) in
            try bind(s)
            var rows: [StoredFeedback] = []
            while try s.step() { rows.append(try FeedbackColumns.read(s)) }
            return rows
        }
    }
}
