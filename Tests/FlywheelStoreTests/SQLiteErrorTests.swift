import XCTest
@testable import FlywheelStore

final class SQLiteErrorTests: XCTestCase {
    func testLockContentionBecomesBusy() throws {
        let path = try StoreTestSupport.databasePath(self)
        let holder = try SQLiteConnection(path: path, readOnly: false)
        try holder.execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x); BEGIN IMMEDIATE")
        let other = try SQLiteConnection(path: path, readOnly: false) // no busy timeout: fails at once
        XCTAssertThrowsError(try other.execute("BEGIN IMMEDIATE")) { error in
            guard let error = error as? SQLiteError else { return XCTFail("\(error)") }
            XCTAssertTrue(error.isBusy)
            guard case let .busy(message) = StoreError(error) else { return XCTFail("\(StoreError(error))") }
            XCTAssertTrue(message.contains("BEGIN IMMEDIATE"), message)
        }
        try holder.execute("ROLLBACK")
    }

    func testUniqueViolationBecomesDuplicateID() throws {
        let raw = try SQLiteConnection(path: try StoreTestSupport.databasePath(self), readOnly: false)
        try raw.execute("CREATE TABLE t (x TEXT UNIQUE); INSERT INTO t VALUES ('a')")
        XCTAssertThrowsError(try raw.execute("INSERT INTO t VALUES ('a')")) { error in
            guard let error = error as? SQLiteError else { return XCTFail("\(error)") }
            guard case let .duplicateID(message) = StoreError(error) else { return XCTFail("\(StoreError(error))") }
            XCTAssertTrue(message.contains("UNIQUE"), message)
        }
    }
}
