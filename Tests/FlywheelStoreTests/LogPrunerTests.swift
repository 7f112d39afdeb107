import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelStore

final class LogPrunerTests: XCTestCase {
    private typealias Support = StoreTestSupport

    /// Runs a pass and waits for its completion.
    private func prune(_ writer: SQLiteLogWriter, _ plan: RetentionPlan,
                       progress: (@Sendable (PruneResult) -> Void)? = nil) -> PruneResult? {
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<PruneResult?>(nil)
        XCTAssertTrue(writer.prune(plan, progress: progress) { r in
            box.withLock { $0 = r }
            done.signal()
        })
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success, "the prune pass never ended")
        return box.withLock { $0 }
    }

    private func feedback(_ id: String, key: String? = nil) -> FeedbackRecord {
        var f = FeedbackRecord(requestID: id, createdAtMillis: 1, signal: .accepted)
        f.idempotencyKey = key
        return f
    }

    private func ids(_ path: String) throws -> Set<String> {
        let raw = try SQLiteConnection(path: path, readOnly: true)
        defer { raw.close() }
        return try raw.withStatement("SELECT id FROM requests") { s throws(SQLiteError) in
            var out = Set<String>()
            while try s.step() { out.insert(s.string(0)) }
            return out
        }
    }

    /// Rows of model "short" go after 5000 ms, "keep" never, the rest after 3000; with feedback, never.
    private static let plan = RetentionPlan(scanBefore: 5_000, batchSize: 3) { model, hasFeedback in
        if model == "keep" || hasFeedback { return nil }
        return model == "short" ? 5_000 : 3_000
    }

    func testPruneDeletesRowsPastTheirCutoffWithTheirFeedbackAndNothingElse() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for (id, model, at) in [("old-default", "m", 1_000), ("mid-default", "m", 4_000), ("old-short", "short", 1_000),
                                ("mid-short", "short", 4_000), ("new-short", "short", 6_000), ("old-keep", "keep", 1_000),
                                ("old-feedback", "m", 1_000), ("old-nomodel", nil, 2_000)] as [(String, String?, Int64)] {
            writer.enqueue(Support.record(id, model: model, at: at))
        }
        writer.enqueue(Support.record("old-default", model: "m", at: 1_500))  // stored as old-default#2
        XCTAssertNotNil(Support.submit(writer, feedback("old-feedback")))
        writer.flush()
        // Other tables: never touched by retention.
        let raw = try SQLiteConnection(path: path, readOnly: false)
        try raw.execute("""
            INSERT INTO eval_runs (id, created_at, dataset, candidate, options, status) VALUES ('run-1', 1, 'd', 'c', '{}', 'passed');
            INSERT INTO policy_changes (created_at, model, variants, action, source) VALUES (1, 'm', '[]', 'config', 'daemon');
            """)

        let result = try XCTUnwrap(prune(writer, Self.plan))
        XCTAssertEqual(try ids(path), ["mid-default", "new-short", "old-keep", "old-feedback"])
        XCTAssertEqual(result.requests, 5)  // old-default, old-default#2, old-short, mid-short, old-nomodel
        XCTAssertEqual(result.feedback, 0)
        XCTAssertEqual(result.examined, 8)  // everything created before scanBefore
        XCTAssertGreaterThanOrEqual(result.batches, 3)
        XCTAssertFalse(result.interrupted)
        XCTAssertEqual(writer.prunedRequestCount, 5)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM request_id_suffixes"), 0)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM eval_runs"), 1)
        XCTAssertEqual(try raw.scalarInt64("SELECT count(*) FROM policy_changes"), 1)
        raw.close()

        // With a shorter rule for feedback'd rows, the row goes and its feedback with it.
        let all = RetentionPlan(scanBefore: 10_000, batchSize: 2) { _, _ in 10_000 }
        let second = try XCTUnwrap(prune(writer, all))
        XCTAssertEqual(second.requests, 4)
        XCTAssertEqual(second.feedback, 1)
        XCTAssertEqual(try ids(path), [])
        writer.close()
        let check = try SQLiteConnection(path: path, readOnly: true)
        XCTAssertEqual(try check.scalarInt64("SELECT count(*) FROM feedback"), 0)
        check.close()
    }

    func testPrunedKeyedRowsStillCountTowardTheirKeysSpendAndUsage() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        var old = Support.record("old", model: "m", at: 1_000)
        old.clientKeyID = "k1"; old.costUSD = 0.25; old.totalTokens = 10
        var oldShadow = Support.record("old-shadow", model: "m", at: 1_000)
        oldShadow.clientKeyID = "k1"; oldShadow.costUSD = 9; oldShadow.shadowOf = "old"
        var recent = Support.record("recent", model: "m", at: 20_000)
        recent.clientKeyID = "k1"; recent.costUSD = 0.5; recent.totalTokens = 20
        var unkeyed = Support.record("unkeyed", model: "m", at: 1_000)
        unkeyed.costUSD = 3
        for r in [old, oldShadow, recent, unkeyed] { writer.enqueue(r) }
        writer.flush()
        let store = try SQLiteAPIKeyStore(path: path)
        XCTAssertEqual(try store.spend(keyID: "k1"), 0.75, accuracy: 1e-9)

        let everythingOld = RetentionPlan(scanBefore: 10_000, batchSize: 2) { _, _ in 10_000 }
        XCTAssertEqual(try XCTUnwrap(prune(writer, everythingOld)).requests, 3)
        XCTAssertEqual(try ids(path), ["recent"])
        // A budget is spend over the key's life: what retention deleted still counts, the shadow run still not.
        XCTAssertEqual(try store.spend(keyID: "k1"), 0.75, accuracy: 1e-9)
        XCTAssertEqual(try store.usage()["k1"], APIKeyUsage(requests: 2, totalTokens: 30, costUSD: 0.75))
        XCTAssertEqual(try store.usage().count, 1)
        writer.close()
    }

    func testDryRunCountsWhatAPassWouldDeleteAndDeletesNothing() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for i in 0..<10 { writer.enqueue(Support.record("r\(i)", model: "m", at: Int64(1_000 * i))) }
        writer.flush()
        XCTAssertNotNil(Support.submit(writer, feedback("r1")))
        writer.close()
        let reader = try SQLiteLogReader(path: path)
        let plan = RetentionPlan(scanBefore: 6_000, batchSize: 4) { _, hasFeedback in hasFeedback ? 1_500 : 6_000 }
        let counted = try reader.prunable(plan)
        XCTAssertEqual(counted.requests, 6)  // r0 and r2...r5; r1 too, its feedback cutoff 1500 being past it
        XCTAssertEqual(counted.feedback, 1)
        XCTAssertEqual(try ids(path).count, 10)
    }

    /// The writer takes queued rows and feedback between two prune batches: proved by the order of events on the
    /// writer thread, not by timing. Rows and feedback submitted during batch 1 are committed before batch 2.
    func testWriterCommitsRowsAndFeedbackBetweenPruneBatches() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path, flushInterval: 10)  // a long group-commit wait, to show it is skipped
        for i in 0..<200 { writer.enqueue(Support.record(String(format: "old-%03d", i), model: "m", at: Int64(1_000 + i))) }
        writer.enqueue(Support.record("kept", model: "m", at: 900_000))
        writer.flush()
        let writtenBefore = writer.writtenCount

        struct Events { var writtenAtBatch: [Int: Int] = [:]; var feedbackAnsweredAfterBatch: Int? }
        let events = Mutex(Events())
        let progress: @Sendable (PruneResult) -> Void = { result in
            events.withLock { $0.writtenAtBatch[result.batches] = writer.writtenCount }
            guard result.batches == 1 else { return }
            // On the writer thread, inside the pass: enqueue and submit (neither waits for the writer).
            writer.enqueue(Support.record("fresh", model: "m", at: 900_001))
            var f = FeedbackRecord(requestID: "kept", createdAtMillis: 1, signal: .accepted)
            f.comment = "during the prune"
            writer.submitFeedback(f) { outcome in
                if case .success = outcome {
                    events.withLock { e in e.feedbackAnsweredAfterBatch = e.writtenAtBatch.keys.max() }
                }
            }
        }
        let plan = RetentionPlan(scanBefore: 500_000, batchSize: 10) { _, _ in 500_000 }
        let result = try XCTUnwrap(prune(writer, plan, progress: progress))
        XCTAssertEqual(result.requests, 200)
        XCTAssertGreaterThanOrEqual(result.batches, 20)
        let seen = events.withLock { $0 }
        XCTAssertEqual(seen.writtenAtBatch[1], writtenBefore)
        XCTAssertEqual(seen.writtenAtBatch[2], writtenBefore + 1, "the row queued during batch 1 is committed before batch 2")
        XCTAssertEqual(seen.feedbackAnsweredAfterBatch, 1, "feedback submitted during batch 1 is answered before batch 2")
        writer.close()
        XCTAssertEqual(try ids(path), ["kept", "fresh"])
    }

    func testOnePassAtATimeAndCloseEndsARunningPass() throws {
        let path = try Support.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        for i in 0..<100 { writer.enqueue(Support.record("r\(i)", model: "m", at: Int64(1_000 + i))) }
        writer.flush()
        let plan = RetentionPlan(scanBefore: 10_000, batchSize: 5) { _, _ in 10_000 }
        let refused = Mutex<Bool?>(nil)
        let done = DispatchSemaphore(value: 0)
        let box = Mutex<PruneResult?>(nil)
        XCTAssertTrue(writer.prune(plan, progress: { r in
            guard r.batches == 2 else { return }
            refused.withLock { $0 = !writer.prune(plan, progress: nil) { _ in } }
            writer.close()  // from the writer thread: starts the shutdown, which ends the pass
        }) { r in
            box.withLock { $0 = r }
            done.signal()
        })
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        writer.close()
        let result = try XCTUnwrap(box.withLock { $0 })
        XCTAssertEqual(refused.withLock { $0 }, true, "a second pass is refused while one runs")
        XCTAssertTrue(result.interrupted)
        XCTAssertEqual(result.requests, 10)
        XCTAssertEqual(try ids(path).count, 90)
        XCTAssertFalse(writer.prune(plan, progress: nil) { _ in }, "a closed log starts no pass")
    }
}

final class LatestRequestsByModelTests: XCTestCase {
    /// `tail --model M` takes the newest rows where M was requested or served, from the two model indexes; the
    /// other conditions still apply, and the page is the newest `limit` of both sides together, oldest first.
    func testNewestRowsOfAModelRequestedOrServedWithTheOtherConditions() throws {
        let path = try StoreTestSupport.databasePath(self)
        let writer = try SQLiteLogWriter(path: path)
        func row(_ id: String, requested: String, served: String, status: Int = 200) {
            var r = StoreTestSupport.record(id, model: requested, status: status)
            r.modelServed = served
            writer.enqueue(r)
        }
        row("1", requested: "x", served: "x-2024")
        row("2", requested: "y", served: "x")
        row("3", requested: "z", served: "z")
        row("4", requested: "x", served: "x", status: 500)
        row("5", requested: "w", served: "x")
        row("6", requested: "z", served: "z")
        writer.close()
        let reader = try SQLiteLogReader(path: path)
        XCTAssertEqual(try reader.latestRequests(limit: 3, filter: RequestFilter(model: "x")).map(\.record.id), ["2", "4", "5"])
        XCTAssertEqual(try reader.latestRequests(limit: 10, filter: RequestFilter(model: "x")).map(\.record.id), ["1", "2", "4", "5"])
        XCTAssertEqual(try reader.latestRequests(limit: 10, filter: RequestFilter(model: "x", status: 200)).map(\.record.id), ["1", "2", "5"])
        XCTAssertEqual(try reader.latestRequests(limit: 10, filter: RequestFilter(model: "x-2024")).map(\.record.id), ["1"])
        XCTAssertEqual(try reader.latestRequests(limit: 10, filter: RequestFilter(model: "absent")).map(\.record.id), [])
        XCTAssertEqual(try reader.latestRequests(limit: 0, filter: RequestFilter(model: "x")).map(\.record.id), [])
    }
}
