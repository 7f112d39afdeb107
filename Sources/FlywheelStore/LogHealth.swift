/// Whether the log can write now, and what its writer went through to get here. While `healthy` is false the
/// request path keeps serving: rows wait in memory (the writer's held batch plus its bounded queue; beyond
/// that they are dropped and counted) and feedback is refused with `.storageUnavailable`, since it cannot be
/// acknowledged durably. The writer retries with backoff and writes what it holds once the storage is back.
public struct LogHealth: Sendable, Equatable {
    /// False from a write that failed for lack of storage (disk full, read-only, I/O error) until the next
    /// successful commit.
    public var healthy = true
    /// Rows taken from the queue by a write that failed, waiting in memory for the retry.
    public var heldRows = 0
    /// Failed write attempts by reason (`StorageFailure.rawValue`), since start.
    public var storageErrors: [String: Int] = [:]
    /// What the latest storage failure said, for logs.
    public var lastFailure: String?

    public init() {}
}

/// Why the storage refused a write: the reasons `LogHealth.storageErrors` counts.
public enum StorageFailure: String, Sendable, CaseIterable {
    /// `SQLITE_FULL`: the disk (or `log.max_size_mb`) is full.
    case diskFull = "disk_full"
    /// `SQLITE_READONLY`: the file or its file system turned read-only.
    case readOnly = "read_only"
    /// `SQLITE_IOERR`: the operating system failed a read, write or sync (EIO, EROFS, ENOSPC on sync...).
    case ioError = "io_error"
    /// `SQLITE_CANTOPEN`: a file the database needs (its WAL, say) could not be opened.
    case cantOpen = "cant_open"
}

/// How hard a commit that carries feedback pushes it to disk before the feedback is acknowledged.
public enum FeedbackDurability: String, Sendable, CaseIterable {
    /// `synchronous=NORMAL` like request rows: a commit survives the process dying (`kill -9`, a crash); the
    /// last commits before a power loss or an OS crash may be rolled back (never corrupted).
    case normal
    /// `synchronous=FULL` for commits that carry feedback: the WAL is fsynced before the commit returns, so
    /// acknowledged feedback survives a power loss or an OS crash too. One fsync per such commit.
    case full
}
