import CSQLite

/// A prepared SQLite statement. Not thread-safe: used only on the thread that owns its connection.
/// Columns and parameters are 0-based for columns and 1-based for parameters, as in the C API.
final class SQLiteStatement {
    private(set) var handle: OpaquePointer?
    private let db: OpaquePointer
    let sql: String

    init(db: OpaquePointer, sql: String) throws(SQLiteError) {
        var stmt: OpaquePointer?
        let rc = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, nil)
        guard rc == SQLITE_OK, let stmt else {
            throw SQLiteError(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)), sql: sql)
        }
        self.db = db
        self.sql = sql
        self.handle = stmt
    }

    deinit { finalize() }

    /// Releases the statement. Called by the connection before it closes; later use throws.
    func finalize() {
        if let handle { sqlite3_finalize(handle) }
        handle = nil
    }

    private func live() throws(SQLiteError) -> OpaquePointer {
        guard let handle else { throw SQLiteError(code: SQLITE_MISUSE, message: "statement used after its connection closed", sql: sql) }
        return handle
    }

    private func check(_ rc: Int32) throws(SQLiteError) {
        if rc != SQLITE_OK { throw error(rc) }
    }

    private func error(_ rc: Int32) -> SQLiteError {
        SQLiteError(code: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)), sql: sql)
    }

    // MARK: Binding

    func bindNull(_ index: Int32) throws(SQLiteError) {
        try check(sqlite3_bind_null(try live(), index))
    }

    func bind(_ value: Int64?, at index: Int32) throws(SQLiteError) {
        guard let value else { return try bindNull(index) }
        try check(sqlite3_bind_int64(try live(), index, value))
    }

    func bind(_ value: Int?, at index: Int32) throws(SQLiteError) {
        try bind(value.map(Int64.init), at: index)
    }

    func bind(_ value: Bool, at index: Int32) throws(SQLiteError) {
        try bind(Int64(value ? 1 : 0), at: index)
    }

    func bind(_ value: Double?, at index: Int32) throws(SQLiteError) {
        guard let value else { return try bindNull(index) }
        try check(sqlite3_bind_double(try live(), index, value))
    }

    func bind(_ value: String?, at index: Int32) throws(SQLiteError) {
        guard var value else { return try bindNull(index) }
        let stmt = try live()
        // Length-delimited so embedded NULs survive; SQLite copies the bytes (SQLITE_TRANSIENT).
        let rc = value.withUTF8 { buf -> Int32 in
            if buf.isEmpty { return sqlite3_bind_text(stmt, index, "", 0, fw_sqlite_transient()) }
            return buf.withMemoryRebound(to: CChar.self) { chars in
                sqlite3_bind_text64(stmt, index, chars.baseAddress, sqlite3_uint64(chars.count),
                                    fw_sqlite_transient(), UInt8(SQLITE_UTF8))
            }
        }
        try check(rc)
    }

    // MARK: Execution

    /// Advances the statement. Returns true when a row is available, false when done.
    /// On error the statement is reset and the error (with SQLite's message and this SQL) thrown.
    @discardableResult
    func step() throws(SQLiteError) -> Bool {
        let stmt = try live()
        let rc = sqlite3_step(stmt)
        switch rc {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default:
            let err = error(rc)
            sqlite3_reset(stmt)
            throw err
        }
    }

    /// Resets the statement for re-execution and clears its bindings.
    func reset() {
        guard let handle else { return }
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    // MARK: Columns (valid after `step()` returned true)

    func isNull(_ column: Int32) -> Bool {
        guard let handle else { return true }
        return sqlite3_column_type(handle, column) == SQLITE_NULL
    }

    func int64(_ column: Int32) -> Int64 {
        guard let handle else { return 0 }
        return sqlite3_column_int64(handle, column)
    }

    func int(_ column: Int32) -> Int { Int(int64(column)) }

    func double(_ column: Int32) -> Double {
        guard let handle else { return 0 }
        return sqlite3_column_double(handle, column)
    }

    func string(_ column: Int32) -> String {
        guard let handle, let text = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: text, count: count), as: UTF8.self)
    }

    func optionalString(_ column: Int32) -> String? { isNull(column) ? nil : string(column) }
    func optionalInt(_ column: Int32) -> Int? { isNull(column) ? nil : int(column) }
    func optionalDouble(_ column: Int32) -> Double? { isNull(column) ? nil : double(column) }
}
