/// Every failure the store reports. All throwing APIs in `FlywheelStore` throw exactly this type.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A SQLite call failed. `code` is the extended result code, `message` the text from
    /// `sqlite3_errmsg` (or the wrapper's own explanation), `sql` the statement involved, when there is one.
    case sqlite(code: Int32, message: String, sql: String?)
    /// Feedback names a request id that is not in the log.
    case unknownRequest(String)
    /// The idempotency key was already used for different feedback (another request, signal or payload).
    case idempotencyConflict(String)
    /// The writer's feedback queue is full.
    case overloaded
    /// The writer has been closed.
    case closed
    /// The reader was pointed at a database file that does not exist.
    case databaseMissing(String)
    /// The database was written by a newer Flywheel whose schema this build does not know.
    case schemaTooNew(found: Int, supported: Int)

    public var description: String {
        switch self {
        case let .sqlite(code, message, sql):
            if let sql { return "SQLite error \(code): \(message) (in: \(sql))" }
            return "SQLite error \(code): \(message)"
        case let .unknownRequest(id):
            return "no logged request with id '\(id)'"
        case let .idempotencyConflict(key):
            return "idempotency key '\(key)' was already used for different feedback"
        case .overloaded:
            return "the log writer's feedback queue is full"
        case .closed:
            return "the log writer is closed"
        case let .databaseMissing(path):
            return "no Flywheel database at '\(path)'"
        case let .schemaTooNew(found, supported):
            return "database schema version \(found) is newer than this build supports (\(supported)); upgrade flywheel"
        }
    }

    /// The primary (non-extended) SQLite result code, when this is a `.sqlite` error.
    var primarySQLiteCode: Int32? {
        if case let .sqlite(code, _, _) = self { return code & 0xFF }
        return nil
    }

    /// True for `SQLITE_BUSY` / `SQLITE_LOCKED`: another connection holds the lock.
    var isBusy: Bool {
        let code = primarySQLiteCode
        return code == 5 || code == 6
    }

    /// True for a UNIQUE constraint violation (`SQLITE_CONSTRAINT_UNIQUE`).
    var isUniqueViolation: Bool {
        if case let .sqlite(code, _, _) = self { return code == 2067 }
        return false
    }
}
