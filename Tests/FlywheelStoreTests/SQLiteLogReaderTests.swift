import Dispatch
import Foundation
import XCTest
@testable import FlywheelStore

final class SQLiteLogReaderTests: XCTestCase {
    private typealias Support = StoreTestSupport

    /// Writes `records` and returns the database path.
    private func database(with records: [RequestRecord], feedback: [FeedbackRecord] = []) throws -> String {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for r in records { XCTAssertTrue(writer.enqueue(r)) }
        for f in feedback {
            guard case .success = Support.submit(writer, f) else { XCTFail("feedback failed"); continue }
        }
        writer.close()
        return path
    }

    func testFilters() throws {
        var servedOnly = Support.record("served-only", model: nil)
        servedOnly.modelServed = "llama"
        var failedWithType = Support.record("typed-error", model: "gpt", route: "upstream", status: 200)
        failedWithType.errorType = "stream_interrupted"
        let path = try database(with: [
            Support.record("gpt-ok", model: "gpt", route: "upstream"),
            Support.record("llama-local", model: "llama", route: "local"),
            Support.record("gpt-500", model: "gpt", route: "local", status: 500),
            servedOnly,
            failedWithType,
            Support.record("llama-429", model: "llama", route: "upstream", status: 429),
        ])
        let reader = try SQLiteLogReader(path: path)
        func ids(_ filter: RequestFilter) throws -> [String] {
            try reader.latestRequests(limit: 100, filter: filter).map(\.record.id)
        }
        XCTAssertEqual(try ids(RequestFilter()).count, 6)
        XCTAssertEqual(try ids(RequestFilter(model: "llama")), ["llama-local", "served-only", "llama-429"])
        XCTAssertEqual(try ids(RequestFilter(route: "local")), ["llama-local", "gpt-500"])
        XCTAssertEqual(try ids(RequestFilter(errorsOnly: true)), ["gpt-500", "typed-error", "llama-429"])
        XCTAssertEqual(try ids(RequestFilter(model: "gpt", route: "local", errorsOnly: true)), ["gpt-500"])
        XCTAssertEqual(try ids(RequestFilter(model: "nobody")), [])
        XCTAssertEqual(try reader.requestCount(filter: RequestFilter(model: "gpt")), 3)
        XCTAssertEqual(try reader.requests(afterRowID: 0, filter: RequestFilter(errorsOnly: true), limit: 2).map(\.record.id),
                       ["gpt-500", "typed-error"])
    }

    func testLatestRequestsReturnsTheNewestOldestFirst() throws {
        let path = try database(with: (0..<10).map { Support.record("r\($0)") })
        let reader = try SQLiteLogReader(path: path)
        let latest = try reader.latestRequests(limit: 3, filter: RequestFilter())
        XCTAssertEqual(latest.map(\.record.id), ["r7", "r8", "r9"])
        XCTAssertEqual(latest.map(\.rowID), [8, 9, 10])
        XCTAssertEqual(try reader.latestRequests(limit: 50, filter: RequestFilter()).count, 10)
        XCTAssertEqual(try reader.latestRequests(limit: 0, filter: RequestFilter()).count, 0)
    }

    func testRequestsAfterRowIDForFollowMode() throws {
        let path = try database(with: (0..<10).map { Support.record("r\($0)") })
        let reader = try SQLiteLogReader(path: path)
        var cursor: Int64 = 0
        var seen: [String] = []
        while true {
            let page = try reader.requests(afterRowID: cursor, filter: RequestFilter(), limit: 4)
            if page.isEmpty { break }
            XCTAssertEqual(page.map(\.rowID), page.map(\.rowID).sorted())
            XCTAssertTrue(page.allSatisfy { $0.rowID > cursor })
            cursor = page.last!.rowID
            seen += page.map(\.record.id)
        }
        XCTAssertEqual(seen, (0..<10).map { "r\($0)" })
        XCTAssertEqual(cursor, try reader.maxRequestRowID())
    }

    func testFeedbackQueries() throws {
        var feedback: [FeedbackRecord] = []
        for i in 0..<5 {
            var f = FeedbackRecord(requestID: i % 2 == 0 ? "even" : "odd", createdAtMillis: Int64(i), signal: .score)
            f.value = Double(i)
            feedback.append(f)
        }
        let path = try database(with: [Support.record("even"), Support.record("odd")], feedback: feedback)
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.feedback(forRequest: "even").map(\.value), [0, 2, 4])
        XCTAssertEqual(try reader.feedback(forRequest: "odd").map(\.value), [1, 3])
        XCTAssertEqual(try reader.feedback(forRequest: "none"), [])
        let latest = try reader.latestFeedback(limit: 2)
        XCTAssertEqual(latest.map(\.record.value), [3, 4])
        XCTAssertEqual(latest.map(\.rowID), latest.map(\.record.id))
        XCTAssertEqual(try reader.feedback(afterRowID: 2, limit: 2).map(\.rowID), [3, 4])
        XCTAssertEqual(try reader.maxFeedbackRowID(), 5)
        XCTAssertEqual(try reader.maxRequestRowID(), 2)
    }

    func testEmptyLog() throws {
        let path = try database(with: [])
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.maxRequestRowID(), 0)
        XCTAssertEqual(try reader.maxFeedbackRowID(), 0)
        XCTAssertEqual(try reader.latestRequests(limit: 10, filter: RequestFilter()).count, 0)
        XCTAssertEqual(try reader.latestFeedback(limit: 10).count, 0)
    }

    func testReaderFollowsWhileTheWriterWrites() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, maxBatch: 50, flushInterval: 0.005)
        defer { writer.close() }
        let reader = try SQLiteLogReader(path: path) // opened before any row exists
        let total = 3_000
        let producer = Thread {
            for i in 0..<total {
                writer.enqueue(StoreTestSupport.record("live-\(i)"))
                if i % 100 == 0 { usleep(1_000) }
            }
        }
        producer.start()

        var cursor: Int64 = 0
        var seen = 0
        var polls = 0
        let deadline = Date().addingTimeInterval(20)
        while seen < total && Date() < deadline {
            let page = try reader.requests(afterRowID: cursor, filter: RequestFilter(), limit: 500)
            for row in page {
                XCTAssertEqual(row.rowID, cursor + 1, "follow mode must see every row, in order")
                XCTAssertEqual(row.record.id, "live-\(seen)")
                cursor = row.rowID
                seen += 1
            }
            polls += 1
            if page.isEmpty { usleep(500) }
        }
        XCTAssertEqual(seen, total)
        XCTAssertGreaterThan(polls, 1)
    }

    /// Paging walks the (created_at, id) index from the cursor instead of sorting or skipping rows.
    func testPagingUsesTheCreatedAtIDIndex() throws {
        let path = try database(with: (0..<50).map { Support.record("r\($0)", at: Int64($0 / 5)) })
        let raw = try SQLiteConnection(path: path, readOnly: true)
        for (comparison, direction) in [(">", "ASC"), ("<", "DESC")] {
            let sql = "EXPLAIN QUERY PLAN SELECT \(RequestColumns.selectList) FROM requests WHERE (created_at, id) \(comparison) (?, ?) ORDER BY created_at \(direction), id \(direction) LIMIT ?"
            let plan = try raw.withStatement(sql) { s throws(SQLiteError) in
                var lines: [String] = []
                while try s.step() { lines.append(s.string(3)) }
                return lines.joined(separator: "; ")
            }
            XCTAssertTrue(plan.contains("USING INDEX requests_created_at_id"), plan)
            XCTAssertFalse(plan.contains("TEMP B-TREE"), plan)
        }
    }
}
