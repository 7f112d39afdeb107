/// A failed SQLite call, as the SQLite layer reports it. Internal: the public API turns it into a
/// backend-neutral `StoreError` (`init(_:)`), keeping the code, message and SQL in the text.
struct SQLiteError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The extended result code.
    let code: Int32
    /// `sqlite3_errmsg`, or the wrapper's own explanation.
    let message: String
    /// The statement involved, when there is one.
    let sql: String?

    var description: String {
        if let sql { return "SQLite error \(code): \(message) (in: \(sql))" }
        return "SQLite error \(code): \(message)"
    }

    /// The primary (non-extended) result code.
    var primaryCode: Int32 { code & 0xFF }

    /// `SQLITE_BUSY` / `SQLITE_LOCKED`: another connection holds the lock.
    var isBusy: Bool { primaryCode == 5 || primaryCode == 6 }

    /// The storage itself refused the write (full, read-only, failing), not this row or statement: the writer
    /// holds its rows and retries later instead of giving them up one by one.
    var storageFailure: StorageFailure? {
        switch primaryCode {
        case 13: return .diskFull   // SQLITE_FULL
        case 8: return .readOnly    // SQLITE_READONLY
        case 10: return .ioError    // SQLITE_IOERR (and its extended codes)
        case 14: return .cantOpen   // SQLITE_CANTOPEN
        default: return nil
        }
    }

    /// `SQLITE_CONSTRAINT_UNIQUE` or `SQLITE_CONSTRAINT_PRIMARYKEY`.
    var isUniqueViolation: Bool { code == 2067 || code == 1555 }
}

extension StoreError {
    /// The neutral form of a SQLite failure: lock contention is `.busy`, a taken unique key `.duplicateID`,
    /// anything else `.backend`; each keeps SQLite's message and statement.
    init(_ error: SQLiteError) {
        if error.isBusy {
            self = .busy(error.description)
        } else if error.storageFailure != nil {
            self = .storageUnavailable(error.description)
        } else if error.isUniqueViolation {
            self = .duplicateID(error.description)
        } else {
            self = .backend(error.description)
        }
    }
}

/// Runs SQLite work at the edge of the public API, turning its failures into `StoreError`.
func translatingSQLiteErrors<T>(_ body: () throws(SQLiteError) -> T) throws(StoreError) -> T {
    do throws(SQLiteError) {
        return try body()
    } catch {
        throw StoreError(error)
    }
}

extension SQLiteConnection {
    /// Runs `body` in one write transaction (`BEGIN IMMEDIATE`, so what it reads is still the newest when what it
    /// records lands); committed if it returns, rolled back if it throws. The stores' read-modify-write steps
    /// (policy changes, API keys) go through it.
    func writeTransaction<T>(_ body: () throws -> T) throws -> T {
        try translatingSQLiteErrors { () throws(SQLiteError) in try execute("BEGIN IMMEDIATE") }
        do {
            let result = try body()
            try translatingSQLiteErrors { () throws(SQLiteError) in try execute("COMMIT") }
            return result
        } catch {
            try? translatingSQLiteErrors { () throws(SQLiteError) in try execute("ROLLBACK") }
            throw error
        }
    }
}
