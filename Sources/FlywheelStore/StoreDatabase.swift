import CSQLite
import Foundation

/// Opens connections to the log with the settings both sides rely on.
enum StoreDatabase {
    /// How long a connection waits for another one's lock before failing with `SQLITE_BUSY`.
    static let busyTimeoutMillis = 5_000

    /// Read-write: WAL, `synchronous=NORMAL`, foreign keys on, migrated to `LogSchema.currentVersion`.
    /// The file is created if missing; its directory must already exist.
    static func openForWriting(path: String, cacheKiB: Int = 32 << 10) throws(StoreError) -> SQLiteConnection {
        let directory = (path as NSString).deletingLastPathComponent
        var isDirectory: ObjCBool = false
        if !directory.isEmpty,
           !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            throw StoreError.backend("directory '\(directory)' does not exist; create it before starting the log")
        }
        let connection = try translatingSQLiteErrors { () throws(SQLiteError) in
            let connection = try SQLiteConnection(path: path, readOnly: false)
            try configureForWriting(connection, path: path, cacheKiB: cacheKiB)
            return connection
        }
        try LogSchema.migrate(connection)
        return connection
    }

    private static func configureForWriting(_ connection: SQLiteConnection, path: String, cacheKiB: Int) throws(SQLiteError) {
        try connection.execute("PRAGMA busy_timeout = \(busyTimeoutMillis)")
        let mode = try connection.withStatement("PRAGMA journal_mode = WAL") { s throws(SQLiteError) in
            try s.step() ? s.string(0) : ""
        }
        if mode.lowercased() != "wal" && path != ":memory:" {
            throw SQLiteError(code: SQLITE_ERROR, message: "could not switch to WAL (journal_mode is '\(mode)')",
                                    sql: "PRAGMA journal_mode = WAL")
        }
        try connection.execute("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON")
        // A larger page cache (32 MiB by default; it fills as the log grows and is the writer's largest use of
        // memory) and checkpoint interval: each page is then copied from the WAL to the database once per
        // ~16 MiB of log instead of once per ~4 MiB, which roughly halves the writer's disk writes.
        try connection.execute("PRAGMA cache_size = -\(max(64, cacheKiB)); PRAGMA wal_autocheckpoint = 4000; PRAGMA journal_size_limit = 67108864")
    }

    /// Read-only, for the CLI. Never creates or migrates anything.
    static func openForReading(path: String) throws(StoreError) -> SQLiteConnection {
        guard FileManager.default.fileExists(atPath: path) else { throw StoreError.databaseMissing(path) }
        let (connection, version) = try translatingSQLiteErrors { () throws(SQLiteError) in
            let connection = try SQLiteConnection(path: path, readOnly: true)
            try connection.execute("PRAGMA busy_timeout = \(busyTimeoutMillis)")
            return (connection, try connection.userVersion())
        }
        try LogSchema.checkNotTooNew(version)
        if version < LogSchema.currentVersion {
            throw StoreError.schemaTooOld(found: version, required: LogSchema.currentVersion)
        }
        return connection
    }
}
