import Foundation
import XCTest
@testable import FlywheelStore

final class SchemaTests: XCTestCase {
    func testMigratesAnEmptyFile() throws {
        let path = try StoreTestSupport.databasePath(self)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data()))
        let writer = try SQLiteLogWriter(path: path)
        writer.close()

        let raw = try SQLiteConnection(path: path, readOnly: true)
        XCTAssertEqual(try raw.userVersion(), LogSchema.currentVersion)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('requests', 'feedback', 'request_id_suffixes')"), 3)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('requests_created_at_id', 'requests_model_requested', 'requests_route')"), 3)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM sqlite_master WHERE name = 'feedback_request_id'"), 1)
    }

    func testReopeningIsIdempotent() throws {
        let path = try StoreTestSupport.databasePath(self)
        let first = try SQLiteLogWriter(path: path)
        first.enqueue(StoreTestSupport.record("a"))
        first.close()
        for _ in 0..<2 {
            let again = try SQLiteLogWriter(path: path)
            again.close()
        }
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.requestCount(), 1)
        let raw = try SQLiteConnection(path: path, readOnly: true)
        XCTAssertEqual(try raw.userVersion(), LogSchema.currentVersion)
    }

    func testWriterUsesWAL() throws {
        let path = try StoreTestSupport.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        defer { writer.close() }
        let raw = try SQLiteConnection(path: path, readOnly: false)
        let mode = try raw.withStatement("PRAGMA journal_mode") { s throws(SQLiteError) in try s.step() ? s.string(0) : "" }
        XCTAssertEqual(mode, "wal")
    }

    func testSchemaTooNewFailsForWriterAndReader() throws {
        let path = try StoreTestSupport.databasePath(self)
        do {
            let raw = try SQLiteConnection(path: path, readOnly: false)
            try raw.execute("PRAGMA user_version = \(LogSchema.currentVersion + 1)")
            raw.close()
        }
        XCTAssertThrowsError(try SQLiteLogWriter(path: path)) { error in
            guard case let StoreError.schemaTooNew(found, supported) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(found, LogSchema.currentVersion + 1)
            XCTAssertEqual(supported, LogSchema.currentVersion)
        }
        XCTAssertThrowsError(try SQLiteLogReader(path: path)) { error in
            guard case StoreError.schemaTooNew = error else { return XCTFail("\(error)") }
        }
    }

    func testReaderOnMissingFile() throws {
        let path = try StoreTestSupport.makeTempDirectory(self).appendingPathComponent("nope.sqlite").path
        XCTAssertThrowsError(try SQLiteLogReader(path: path)) { error in
            guard case let StoreError.databaseMissing(missing) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(missing, path)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the reader must not create the file")
    }

    func testWriterNeedsAnExistingDirectory() throws {
        let path = try StoreTestSupport.makeTempDirectory(self).appendingPathComponent("missing/log.sqlite").path
        XCTAssertThrowsError(try SQLiteLogWriter(path: path)) { error in
            guard case let StoreError.backend(message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("does not exist"), message)
        }
    }

    func testReaderRejectsAnUnmigratedDatabase() throws {
        let path = try StoreTestSupport.databasePath(self)
        try SQLiteConnection(path: path, readOnly: false).execute("CREATE TABLE unrelated (x)")
        XCTAssertThrowsError(try SQLiteLogReader(path: path)) { error in
            XCTAssertEqual(error as? StoreError, .schemaTooOld(found: 0, required: LogSchema.currentVersion))
        }
    }

    func testSQLiteErrorsCarryMessageAndSQL() throws {
        let path = try StoreTestSupport.databasePath(self)
        let raw = try SQLiteConnection(path: path, readOnly: false)
        XCTAssertThrowsError(try raw.statement("SELECT nonsense FROM nowhere")) { error in
            guard let error = error as? SQLiteError else { return XCTFail("\(error)") }
            XCTAssertEqual(error.primaryCode, 1)
            XCTAssertTrue(error.message.contains("nowhere"), error.message)
            XCTAssertEqual(error.sql, "SELECT nonsense FROM nowhere")
            // At the public edge it becomes a neutral error that keeps all of that.
            guard case let .backend(message) = StoreError(error) else { return XCTFail("\(StoreError(error))") }
            XCTAssertTrue(message.contains("nowhere") && message.contains("SELECT nonsense"), message)
        }
    }

    /// The upgrade path a future v2 takes: one more entry in the list, applied once, on top of v1 data.
    func testAddingAMigrationUpgradesExistingDataOnce() throws {
        let path = try StoreTestSupport.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        writer.enqueue(StoreTestSupport.record("before-v2"))
        writer.close()

        let v2 = LogSchema.migrations + [Migration(version: LogSchema.currentVersion + 1, summary: "test column",
                                                   sql: "ALTER TABLE requests ADD COLUMN test_extra TEXT DEFAULT 'x'")]
        let raw = try SQLiteConnection(path: path, readOnly: false)
        try LogSchema.migrate(raw, migrations: v2)
        try LogSchema.migrate(raw, migrations: v2) // idempotent: ALTER would fail if run twice
        XCTAssertEqual(try raw.userVersion(), LogSchema.currentVersion + 1)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM requests WHERE test_extra = 'x'"), 1)
        // And this build now refuses the file.
        XCTAssertThrowsError(try LogSchema.migrate(raw)) { error in
            XCTAssertEqual(error as? StoreError, .schemaTooNew(found: LogSchema.currentVersion + 1, supported: LogSchema.currentVersion))
        }
    }

    /// A log written by the first schema keeps its rows through every later migration, and they read back
    /// with the new flags false.
    func testAVersionOneLogUpgradesToTheCurrentSchema() throws {
        let path = try StoreTestSupport.databasePath(self)
        do {
            let raw = try SQLiteConnection(path: path, readOnly: false)
            try LogSchema.migrate(raw, migrations: Array(LogSchema.migrations.prefix(1)))
            try raw.execute("""
                INSERT INTO requests (id, created_at, method, endpoint, status, request_json, latency_ms)
                VALUES ('old', 1, 'POST', '/v1/chat/completions', 200, '{}', 5)
                """)
            raw.close()
        }
        let writer = try SQLiteLogWriter(path: path)
        var flagged = StoreTestSupport.record("new")
        flagged.responseTruncated = true
        flagged.incomplete = true
        writer.enqueue(flagged)
        writer.enqueue(StoreTestSupport.record("old")) // a resend of a pre-upgrade id
        writer.close()
        let reader = try SQLiteLogReader(path: path)
        let old = try XCTUnwrap(try reader.request(id: "old"))
        XCTAssertFalse(old.responseTruncated)
        XCTAssertFalse(old.incomplete)
        XCTAssertEqual(try reader.request(id: "new"), flagged)
        XCTAssertNotNil(try reader.request(id: "old#2"))
        let raw = try SQLiteConnection(path: path, readOnly: true)
        XCTAssertEqual(try raw.userVersion(), LogSchema.currentVersion)
    }

    func testAFailingMigrationLeavesTheVersionUntouched() throws {
        let path = try StoreTestSupport.databasePath(self)
        try SQLiteLogWriter(path: path).close()
        let broken = LogSchema.migrations + [Migration(version: LogSchema.currentVersion + 1, summary: "broken",
                                                       sql: "CREATE TABLE half (x); SELECT * FROM missing_table")]
        let raw = try SQLiteConnection(path: path, readOnly: false)
        XCTAssertThrowsError(try LogSchema.migrate(raw, migrations: broken))
        XCTAssertEqual(try raw.userVersion(), LogSchema.currentVersion)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM sqlite_master WHERE name = 'half'"), 0, "rolled back")
    }
}
