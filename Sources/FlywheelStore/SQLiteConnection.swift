import CSQLite

/// One SQLite connection with a cache of prepared statements.
///
/// Thread rule: not thread-safe. A connection (and every statement it hands out) is used by exactly
/// one thread at a time; it is opened with `SQLITE_OPEN_NOMUTEX` for that reason.
final class SQLiteConnection {
    private var db: OpaquePointer?
    private var cache: [String: SQLiteStatement] = [:]
    let path: String

    /// Opens `path`. `readOnly` opens with `SQLITE_OPEN_READONLY`; otherwise read-write, creating the file.
    init(path: String, readOnly: Bool) throws(SQLiteError) {
        self.path = path
        var handle: OpaquePointer?
        let flags = (readOnly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &handle, flags, nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            if let handle { sqlite3_close_v2(handle) }
            throw SQLiteError(code: rc, message: "\(message): \(path)", sql: nil)
        }
        sqlite3_extended_result_codes(handle, 1)
        self.db = handle
    }

    deinit { close() }

    /// Finalizes cached statements and closes. Idempotent.
    func close() {
        for statement in cache.values { statement.finalize() }
        cache.removeAll()
        if let db { sqlite3_close_v2(db) }
        db = nil
    }

    private func live() throws(SQLiteError) -> OpaquePointer {
        guard let db else { throw SQLiteError(code: SQLITE_MISUSE, message: "connection is closed", sql: nil) }
        return db
    }

    /// Runs one or more SQL statements that return no rows we need (DDL, pragmas, BEGIN/COMMIT).
    func execute(_ sql: String) throws(SQLiteError) {
        let db = try live()
        var errmsg: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &errmsg)
        if rc != SQLITE_OK {
            let message = errmsg.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(errmsg)
            throw SQLiteError(code: sqlite3_extended_errcode(db), message: message, sql: sql)
        }
    }

    /// The prepared statement for `sql`, prepared once and reused. Callers must `reset()` it after use
    /// (see `withStatement`).
    func statement(_ sql: String) throws(SQLiteError) -> SQLiteStatement {
        if let cached = cache[sql] { return cached }
        let statement = try SQLiteStatement(db: try live(), sql: sql)
        cache[sql] = statement
        return statement
    }

    /// Runs `body` with the cached statement for `sql`, resetting it afterwards whatever happens.
    func withStatement<T>(_ sql: String, _ body: (SQLiteStatement) throws(SQLiteError) -> T) throws(SQLiteError) -> T {
        let statement = try statement(sql)
        defer { statement.reset() }
        return try body(statement)
    }

    /// The first column of the first row of `sql` as an integer (0 when there is no row).
    func scalarInt64(_ sql: String) throws(SQLiteError) -> Int64 {
        try withStatement(sql) { stmt throws(SQLiteError) in try stmt.step() ? stmt.int64(0) : 0 }
    }

    /// `PRAGMA user_version`.
    func userVersion() throws(SQLiteError) -> Int {
        Int(try scalarInt64("PRAGMA user_version"))
    }

    var lastInsertRowID: Int64 {
        guard let db else { return 0 }
        return sqlite3_last_insert_rowid(db)
    }

    /// Rows inserted, updated or deleted by the most recent statement (0 for an `INSERT ... DO NOTHING` that
    /// hit its conflict).
    var changes: Int {
        guard let db else { return 0 }
        return Int(sqlite3_changes64(db))
    }

    /// True when no transaction is open.
    var isAutocommit: Bool {
        guard let db else { return true }
        return sqlite3_get_autocommit(db) != 0
    }
}
