import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelStore

/// The writer when the storage refuses writes: a size cap (`PRAGMA max_page_count`) gives SQLITE_FULL exactly
/// like a full disk, deterministically. It keeps accepting rows up to its bound, refuses feedback, says so once,
/// and writes everything it still holds once there is room again.
final class StorageFailureTests: XCTestCase {
    private typealias Support = StoreTestSupport

    /// Lines the writer said, in order.
    private final class Reports: Sendable {
        private let lines = Mutex<[String]>([])
        func add(_ line: String) { lines.withLock { $0.append(line) } }
        var all: [String] { lines.withLock { $0 } }
    }

    /// A row large enough to need new pages (overflow pages) in a database that may not grow.
    private func bigRecord(_ id: String) -> RequestRecord {
        var r = Support.record(id)
        r.responseJSON = String(repeating: "x", count: 16 << 10)
        return r
    }

    private func rowCount(_ path: String, _ table: String = "requests") throws -> Int64 {
        let connection = try SQLiteConnection(path: path, readOnly: true)
        defer { connection.close() }
        return try connection.scalarInt64("SELECT count(*) FROM \(table)")
    }

    func testAFullDatabaseKeepsRowsInMemoryRefusesFeedbackAndWritesThemOnceThereIsRoom() throws {
        let path = try Support.databasePath(self)
        let reports = Reports()
        // A cap of one byte is "no growth beyond the current size" (SQLite never caps below it).
        let writer = try SQLiteLogWriter(path: path, capacity: 1_000, maxBatch: 10, flushInterval: 0.005,
                                         maxSizeBytes: 1, report: { reports.add($0) })
        defer { writer.close() }
        for i in 0..<25 { XCTAssertTrue(writer.enqueue(bigRecord("full-\(i)"))) }
        XCTAssertTrue(Support.waitUntil(seconds: 10) { !writer.health.healthy }, "the writer never found the log full")
        let health = writer.health
        XCTAssertGreaterThanOrEqual(health.storageErrors["disk_full"] ?? 0, 1)
        XCTAssertGreaterThan(health.heldRows, 0)
        XCTAssertTrue(health.lastFailure?.contains("full") ?? false, "\(String(describing: health.lastFailure))")
        XCTAssertEqual(writer.writeErrorCount, 0, "rows refused by a full disk are held, not given up")

        // Feedback cannot be acknowledged durably now: refused at once, not after a deadline.
        let feedback = FeedbackRecord(requestID: "full-0", createdAtMillis: 1, signal: .accepted)
        guard case .failure(.storageUnavailable) = Support.submit(writer, feedback) else {
            return XCTFail("feedback on a full log must be refused with .storageUnavailable")
        }
        // Requests keep arriving while it is full; they wait in the queue.
        for i in 25..<40 { XCTAssertTrue(writer.enqueue(bigRecord("full-\(i)"))) }
        // Retries fail too (backoff), and it says so once, not per row or per retry.
        XCTAssertTrue(Support.waitUntil(seconds: 10) { (writer.health.storageErrors["disk_full"] ?? 0) >= 3 })
        XCTAssertEqual(reports.all.filter { $0.contains("cannot write the log") }.count, 1, "\(reports.all)")
        XCTAssertEqual(try rowCount(path), 0)

        // Room again: every row it held or queued is written, and it says it recovered.
        writer.setMaxSize(bytes: nil)
        XCTAssertTrue(Support.waitUntil(seconds: 10) { writer.health.healthy }, "no recovery after the cap was lifted")
        writer.flush()
        XCTAssertEqual(try rowCount(path), 40)
        XCTAssertEqual(writer.droppedCount, 0)
        XCTAssertEqual(writer.health.heldRows, 0)
        XCTAssertEqual(reports.all.filter { $0.contains("writing again") }.count, 1, "\(reports.all)")
        guard case .success(let stored) = Support.submit(writer, feedback), !stored.duplicate else {
            return XCTFail("feedback after recovery must be stored")
        }
        XCTAssertEqual(try rowCount(path, "feedback"), 1)
    }

    func testRowsBeyondTheQueueAreDroppedAndCountedWhileFullAndTheRestWrittenAfter() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, capacity: 8, maxBatch: 4, flushInterval: 0.005, maxSizeBytes: 1)
        defer { writer.close() }
        XCTAssertTrue(writer.enqueue(bigRecord("first")))
        XCTAssertTrue(Support.waitUntil(seconds: 10) { !writer.health.healthy })
        var accepted = 1
        for i in 0..<50 where writer.enqueue(bigRecord("r-\(i)")) { accepted += 1 }
        XCTAssertGreaterThan(writer.droppedCount, 0, "a full log must bound the rows it keeps")
        XCTAssertEqual(accepted + writer.droppedCount, 51)
        // Held (at most one batch) plus queued (at most the capacity): memory stays bounded.
        XCTAssertLessThanOrEqual(writer.health.heldRows + writer.queueDepth, 8 + 4)

        writer.setMaxSize(bytes: 64 << 20)
        XCTAssertTrue(Support.waitUntil(seconds: 10) { writer.health.healthy })
        writer.flush()
        XCTAssertEqual(try rowCount(path), Int64(accepted), "every accepted row is written once there is room")
    }

    func testPruningRowsAlsoMakesRoom() throws {
        let path = try Support.databasePath(self)
        let seed = try SQLiteLogWriter(path: path, maxBatch: 100, flushInterval: 0.005)
        for i in 0..<20 { seed.enqueue(bigRecord("old-\(i)")) }
        seed.close()
        let writer = try SQLiteLogWriter(path: path, capacity: 100, maxBatch: 10, flushInterval: 0.005, maxSizeBytes: 1)
        defer { writer.close() }
        for i in 0..<5 { writer.enqueue(bigRecord("new-\(i)")) }
        XCTAssertTrue(Support.waitUntil(seconds: 10) { !writer.health.healthy })
        // Another connection deletes old rows (as retention does): their pages are reused, no cap change needed.
        let other = try SQLiteConnection(path: path, readOnly: false)
        try other.execute("PRAGMA busy_timeout = 5000; DELETE FROM requests WHERE id LIKE 'old-%'")
        other.close()
        XCTAssertTrue(Support.waitUntil(seconds: 15) { writer.health.healthy }, "no recovery after rows were pruned")
        writer.flush()
        XCTAssertEqual(try rowCount(path), 5)
    }

    func testCloseWhileTheStorageRefusesWritesReturnsAndCountsWhatWasLost() throws {
        let path = try Support.databasePath(self)
        let reports = Reports()
        let writer = try SQLiteLogWriter(path: path, capacity: 100, maxBatch: 5, flushInterval: 0.005, maxSizeBytes: 1,
                                         report: { reports.add($0) })
        for i in 0..<12 { writer.enqueue(bigRecord("lost-\(i)")) }
        XCTAssertTrue(Support.waitUntil(seconds: 10) { !writer.health.healthy })
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            writer.close()
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 20), .success, "close() must not retry a full disk forever")
        XCTAssertEqual(writer.writeErrorCount, 12)
        XCTAssertTrue(reports.all.contains { $0.contains("12 request rows lost") }, "\(reports.all)")
        XCTAssertFalse(writer.enqueue(bigRecord("after")))
    }

    func testStorageErrorsAreRecognisedByTheirPrimaryCode() {
        func failure(_ code: Int32) -> StorageFailure? { SQLiteError(code: code, message: "m", sql: nil).storageFailure }
        XCTAssertEqual(failure(13), .diskFull)
        XCTAssertEqual(failure(8), .readOnly)
        XCTAssertEqual(failure(8 | (1 << 8)), .readOnly)        // SQLITE_READONLY_RECOVERY
        XCTAssertEqual(failure(10), .ioError)
        XCTAssertEqual(failure(10 | (3 << 8)), .ioError)        // SQLITE_IOERR_WRITE
        XCTAssertEqual(failure(10 | (4 << 8)), .ioError)        // SQLITE_IOERR_FSYNC
        XCTAssertEqual(failure(14), .cantOpen)
        XCTAssertNil(failure(5))                                // busy is retried as before
        XCTAssertNil(failure(2067))                             // a unique violation is one row's problem
        XCTAssertNil(failure(1))
        guard case .storageUnavailable = StoreError(SQLiteError(code: 13, message: "database or disk is full", sql: nil)) else {
            return XCTFail("SQLITE_FULL must surface as .storageUnavailable")
        }
    }
}
