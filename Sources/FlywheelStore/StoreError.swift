/// Every failure the store reports, in terms that do not depend on the backend. All throwing APIs of
/// `LogSink` and `LogQueries` report exactly this type; a backend puts its own detail (error code,
/// statement) into the message of `.busy`, `.duplicateID` or `.backend`.
public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The database stayed locked by someone else (another process, a long transaction) past the wait.
    case busy(String)
    /// A row's unique key was already taken and the store could not give it another one.
    case duplicateID(String)
    /// Feedback names a request id that is not in the log.
    case unknownRequest(String)
    /// The idempotency key was already used for different feedback (another request, signal or payload).
    case idempotencyConflict(String)
    /// The storage refuses writes (disk full, read-only, I/O errors): nothing can be stored durably now. The
    /// writer retries on its own; ask again later.
    case storageUnavailable(String)
    /// The writer's feedback queue is full.
    case overloaded
    /// The writer has been closed.
    case closed
    /// The feedback's deadline passed before the store answered (see `LogSink.submitFeedback`).
    case deadlineExceeded
    /// The reader was pointed at a database that does not exist.
    case databaseMissing(String)
    /// The database was written by a newer Flywheel whose schema this build does not know.
    case schemaTooNew(found: Int, supported: Int)
    /// The database has not yet been migrated to this build's schema (the daemon migrates on start).
    case schemaTooOld(found: Int, required: Int)
    /// Any other failure of the backend, with its own explanation.
    case backend(String)

    public var description: String {
        switch self {
        case let .busy(message):
            return "the log database is locked: \(message)"
        case let .duplicateID(message):
            return "duplicate id: \(message)"
        case let .unknownRequest(id):
            return "no logged request with id '\(id)'"
        case let .idempotencyConflict(key):
            return "idempotency key '\(key)' was already used for different feedback"
        case let .storageUnavailable(message):
            return "the log cannot be written now: \(message)"
        case .overloaded:
            return "the log writer's feedback queue is full"
        case .closed:
            return "the log writer is closed"
        case .deadlineExceeded:
            return "the log writer did not answer before the deadline"
        case let .databaseMissing(path):
            return "no Flywheel database at '\(path)'"
        case let .schemaTooNew(found, supported):
            return "database schema version \(found) is newer than this build supports (\(supported)); upgrade flywheel"
        case let .schemaTooOld(found, required):
            return "database schema version \(found) is older than \(required); start the daemon once to migrate it"
        case let .backend(message):
            return message
        }
    }
}
