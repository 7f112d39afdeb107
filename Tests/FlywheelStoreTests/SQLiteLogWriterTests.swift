import Dispatch
import Foundation
import XCTest
@testable import FlywheelStore

final class SQLiteLogWriterTests: XCTestCase {
    private typealias Support = StoreTestSupport

    func testRoundTripsEveryField() throws {
        let path = try Support.databasePath(self)
        var r = RequestRecord(id: "0192b3c4-0000-7000-8000-000000000001", createdAtMillis: 1_731_000_000_123,
                              method: "POST", endpoint: "/v1/chat/completions",
                              requestJSON: #"{"model":"m","messages":[{"role":"user","content":"héllo \u0000 ✓"}]}"#,
                              status: 200, latencyMillis: 123.25)
        r.clientKeyID = "key-1"
        r.tags = ["prod", "with \"quotes\"", "back\\slash", "new\nline", "ünï", ""]
        r.user = "user-42"
        r.metadataJSON = #"{"team":"search"}"#
        r.modelRequested = "gpt-4o"
        r.modelServed = "gpt-4o-2024-08-06"
        r.route = "upstream"
        r.upstream = "openai"
        r.stream = true
        r.errorType = "rate_limit_exceeded"
        r.errorMessage = "slow down"
        r.responseJSON = #"{"id":"chatcmpl-1","choices":[]}"#
        r.timeToFirstTokenMillis = 45.5
        r.upstreamMillis = 110.75
        r.promptTokens = 12
        r.completionTokens = 34
        r.totalTokens = 46
        r.costUSD = 0.000123
        r.attempts = 2
        r.responseTruncated = true
        r.incomplete = true
        var minimal = RequestRecord(id: "minimal", createdAtMillis: 1, method: "GET", endpoint: "/v1/models",
                                    requestJSON: "", status: 0, latencyMillis: 0)
        minimal.tags = []

        let writer = try SQLiteLogWriter(path: path)
        XCTAssertTrue(writer.enqueue(r))
        XCTAssertTrue(writer.enqueue(minimal))
        writer.close()

        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.request(id: r.id), r)
        XCTAssertEqual(try reader.request(id: "minimal"), minimal)
        XCTAssertNil(try reader.request(id: "absent"))
    }

    func testTagsAreStoredAsJSONArrays() throws {
        let path = try Support.databasePath(self)
        var tagged = Support.record("tagged")
        tagged.tags = ["a", "b \"c\"", "tab\there", "\u{01}"]
        let writer = try SQLiteLogWriter(path: path)
        writer.enqueue(tagged)
        writer.enqueue(Support.record("untagged"))
        writer.close()

        let raw = try SQLiteConnection(path: path, readOnly: true)
        let stored = try raw.withStatement("SELECT tags FROM requests ORDER BY row_id") { s throws(SQLiteError) in
            var out: [String] = []
            while try s.step() { out.append(s.string(0)) }
            return out
        }
        XCTAssertEqual(stored, [#"["a","b \"c\"","tab\there","\u0001"]"#, "[]"])
        // SQLite's own JSON functions agree it is valid JSON.
        XCTAssertEqual(try raw.scalarInt64("SELECT json_array_length(tags) FROM requests WHERE id = 'tagged'"), 4)
        let decoded = try JSONDecoder().decode([String].self, from: Data(stored[0].utf8))
        XCTAssertEqual(decoded, tagged.tags)
        XCTAssertEqual(try SQLiteLogReader(path: path).request(id: "tagged")?.tags, tagged.tags)
    }

    func testBatchOfFiveThousandThenFlush() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        defer { writer.close() }
        for i in 0..<5_000 { XCTAssertTrue(writer.enqueue(Support.record("req-\(i)"))) }
        writer.flush()
        XCTAssertEqual(writer.writtenCount, 5_000)
        XCTAssertEqual(writer.queueDepth, 0)
        XCTAssertEqual(writer.droppedCount, 0)
        XCTAssertEqual(writer.writeErrorCount, 0)
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.requestCount(), 5_000)
        XCTAssertEqual(try reader.maxRequestRowID(), 5_000)
        XCTAssertEqual(try reader.latestRequests(limit: 1, filter: RequestFilter()).first?.record.id, "req-4999")
    }

    func testQueueFullDropsAndCounts() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, capacity: 3, maxBatch: 1)
        defer { writer.close() }
        // Hold the write lock so the writer thread stalls in BEGIN IMMEDIATE with its first row.
        let blocker = try SQLiteConnection(path: path, readOnly: false)
        try blocker.execute("BEGIN IMMEDIATE")
        XCTAssertTrue(writer.enqueue(Support.record("r0")))
        XCTAssertTrue(Support.waitUntil { writer.queueDepth == 0 }, "writer never took the first row")
        XCTAssertTrue(writer.enqueue(Support.record("r1")))
        XCTAssertTrue(writer.enqueue(Support.record("r2")))
        XCTAssertTrue(writer.enqueue(Support.record("r3")))
        XCTAssertEqual(writer.queueDepth, 3)
        XCTAssertFalse(writer.enqueue(Support.record("r4")))
        XCTAssertFalse(writer.enqueue(Support.record("r5")))
        XCTAssertEqual(writer.droppedCount, 2)
        XCTAssertEqual(writer.writtenCount, 0)

        try blocker.execute("COMMIT")
        writer.flush()
        XCTAssertEqual(writer.writtenCount, 4)
        XCTAssertEqual(writer.writeErrorCount, 0)
        let ids = try SQLiteLogReader(path: path).latestRequests(limit: 10, filter: RequestFilter()).map(\.record.id)
        XCTAssertEqual(ids, ["r0", "r1", "r2", "r3"])
    }

    func testFeedbackQueueOverloaded() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        defer { writer.close() }
        let blocker = try SQLiteConnection(path: path, readOnly: false)
        try blocker.execute("BEGIN IMMEDIATE")
        // The first submit is taken by the writer (which then stalls on the lock); fill the queue behind it.
        let answered = DispatchSemaphore(value: 0)
        writer.submitFeedback(FeedbackRecord(requestID: "x", createdAtMillis: 0, signal: .accepted)) { _ in answered.signal() }
        XCTAssertTrue(Support.waitUntil { writer.pendingFeedbackCount == 0 })
        for _ in 0..<SQLiteLogWriter.feedbackCapacity {
            writer.submitFeedback(FeedbackRecord(requestID: "x", createdAtMillis: 0, signal: .accepted)) { _ in answered.signal() }
        }
        let overflow = ResultBox()
        writer.submitFeedback(FeedbackRecord(requestID: "x", createdAtMillis: 0, signal: .accepted)) { overflow.set($0) }
        guard case .failure(.overloaded) = overflow.get() else { return XCTFail("expected overloaded, got \(String(describing: overflow.get()))") }
        try blocker.execute("ROLLBACK")
        for _ in 0...SQLiteLogWriter.feedbackCapacity { answered.wait() }
    }

    func testCloseDrainsAndCheckpointsTheWAL() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, flushInterval: 10)
        for i in 0..<1_000 { XCTAssertTrue(writer.enqueue(Support.record("drain-\(i)"))) }
        writer.close()
        XCTAssertEqual(writer.writtenCount, 1_000)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path + "-wal") && ((try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0) > 0,
                       "close should checkpoint the WAL")
        XCTAssertEqual(try SQLiteLogReader(path: path).requestCount(), 1_000)
    }

    func testConcurrentCloseCallsAllReturnAfterTheDrain() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for i in 0..<500 { writer.enqueue(Support.record("c-\(i)")) }
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            writer.close()
            XCTAssertEqual(writer.writtenCount, 500)
        }
    }

    func testDuplicateRequestIDKeepsEveryRow() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        var first = Support.record("dup")
        first.status = 200
        var second = Support.record("dup")
        second.status = 502
        var third = Support.record("dup")
        third.status = 503
        writer.enqueue(first)
        writer.flush()
        writer.enqueue(second) // a separate batch
        writer.enqueue(third)
        writer.close()
        XCTAssertEqual(writer.writtenCount, 3)
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.request(id: "dup")?.status, 200)
        XCTAssertEqual(try reader.request(id: "dup#2")?.status, 502)
        XCTAssertEqual(try reader.request(id: "dup#3")?.status, 503)
    }

    /// A client that literally sends `x#3` takes that id; the renamer steps past it instead of failing.
    func testRenameStepsOverLiteralSuffixedIDs() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for id in ["x#3", "x", "x", "x", "x#2"] { writer.enqueue(Support.record(id)) }
        writer.close()
        XCTAssertEqual(writer.writtenCount, 5)
        // The suffix survives a restart.
        let again = try SQLiteLogWriter(path: path)
        again.enqueue(Support.record("x"))
        again.close()
        let ids = try SQLiteLogReader(path: path).latestRequests(limit: 10, filter: RequestFilter()).map(\.record.id)
        XCTAssertEqual(ids, ["x#3", "x", "x#2", "x#4", "x#2#2", "x#5"])
    }

    /// The store answers by the deadline even while the writer is stuck behind another process's lock,
    /// and feedback the writer had not yet taken is then never written.
    func testFeedbackPastItsDeadlineWhileTheWriterIsBlockedIsAnsweredAndNotWritten() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, maxBatch: 1)
        defer { writer.close() }
        writer.enqueue(Support.record("target"))
        writer.flush()
        let blocker = try SQLiteConnection(path: path, readOnly: false)
        try blocker.execute("BEGIN IMMEDIATE")
        writer.enqueue(Support.record("stuck"))
        XCTAssertTrue(Support.waitUntil { writer.queueDepth == 0 }, "writer never took the row") // now waiting for the lock

        let answered = DispatchSemaphore(value: 0)
        let box = ResultBox()
        writer.submitFeedback(FeedbackRecord(requestID: "target", createdAtMillis: 1, signal: .accepted),
                              deadline: .now() + .milliseconds(20)) { result in
            box.set(result)
            answered.signal()
        }
        XCTAssertEqual(answered.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(box.get(), .failure(.deadlineExceeded))

        try blocker.execute("COMMIT")
        writer.flush()
        XCTAssertEqual(writer.writtenCount, 2)
        XCTAssertEqual(try SQLiteLogReader(path: path).feedback(forRequest: "target"), [], "the caller was told it failed")
    }

    func testAFailingRowDoesNotLoseItsBatch() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, maxBatch: 100)
        defer { writer.close() }
        let blocker = try SQLiteConnection(path: path, readOnly: false)
        try blocker.execute("BEGIN IMMEDIATE")
        try blocker.execute("""
            CREATE TRIGGER reject_boom BEFORE INSERT ON requests WHEN NEW.endpoint = '/boom'
            BEGIN SELECT RAISE(ABORT, 'boom'); END
            """)
        writer.enqueue(Support.record("first"))
        XCTAssertTrue(Support.waitUntil { writer.queueDepth == 0 })
        // These four wait in the queue and go out as one batch once the lock is released.
        writer.enqueue(Support.record("ok-1"))
        writer.enqueue(Support.record("bad", endpoint: "/boom"))
        writer.enqueue(Support.record("ok-2"))
        writer.enqueue(Support.record("ok-3"))
        try blocker.execute("COMMIT")
        writer.flush()
        XCTAssertEqual(writer.writtenCount, 4)
        XCTAssertEqual(writer.writeErrorCount, 1)
        guard case let .backend(message)? = writer.lastWriteError else { return XCTFail("no last error") }
        XCTAssertTrue(message.contains("boom"), message)
        let ids = try SQLiteLogReader(path: path).latestRequests(limit: 10, filter: RequestFilter()).map(\.record.id)
        XCTAssertEqual(ids, ["first", "ok-1", "ok-2", "ok-3"])
    }

    func testEnqueueFromManyThreads() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, maxBatch: 64)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<250 { writer.enqueue(Support.record("t\(t)-\(i)")) }
        }
        writer.close()
        XCTAssertEqual(writer.writtenCount, 2_000)
        XCTAssertEqual(try SQLiteLogReader(path: path).requestCount(), 2_000)
    }

    func testFlushAndCloseFromACompletionDoNotDeadlock() throws {
        let path = try Support.databasePath(self)
        var writer: SQLiteLogWriter? = try SQLiteLogWriter(path: path)
        writer!.enqueue(Support.record("r"))
        let done = DispatchSemaphore(value: 0)
        let captured = writer!
        writer!.submitFeedback(FeedbackRecord(requestID: "r", createdAtMillis: 0, signal: .accepted)) { result in
            captured.flush()
            captured.close()
            XCTAssertFalse(captured.enqueue(StoreTestSupport.record("after")))
            if case .failure = result { XCTFail("feedback failed") }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        writer!.close() // waits for the shutdown the completion started
        XCTAssertEqual(writer!.writtenCount, 1)
        writer = nil
        XCTAssertEqual(try SQLiteLogReader(path: path).feedback(forRequest: "r").count, 1)
    }
}
