import Foundation
import FlywheelStore
import XCTest
@testable import FlywheelLoop

final class LatencyDigestTests: XCTestCase {
    func testPercentilesAreWithinTwoPercentInConstantMemory() {
        var digest = LatencyDigest()
        for i in 1...100_000 { digest.add(Double(i) / 10) }  // 0.1 ms ... 10 s, uniform
        for (fraction, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = try! XCTUnwrap(digest.percentile(fraction))
            XCTAssertEqual(got, exact, accuracy: exact * 0.021, "p\(Int(fraction * 100))")
        }
        XCTAssertEqual(digest.count, 100_000)
        XCTAssertNil(LatencyDigest().percentile(0.5))
        var one = LatencyDigest()
        one.add(42)
        XCTAssertEqual(one.percentile(0.99), 42)
        one.add(.nan)
        one.add(-1)
        XCTAssertEqual(one.count, 1)
    }
}

final class UsageReportTests: XCTestCase {
    func testFiguresPerModelAndRouteWithAcceptanceCostAndSavings() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("log.db").path
        let writer = try SQLiteLogWriter(path: path)
        func record(_ id: String, model: String, route: String, status: Int = 200, latency: Double, prompt: Int, completion: Int,
                    cost: Double?, at: Int64) -> RequestRecord {
            var r = RequestRecord(id: id, createdAtMillis: at, method: "POST", endpoint: "/v1/chat/completions",
                                  requestJSON: "{}", status: status, latencyMillis: latency)
            r.modelRequested = model
            r.route = route
            r.promptTokens = prompt
            r.completionTokens = completion
            r.costUSD = cost
            if status >= 400 { r.errorType = "upstream_error" }
            return r
        }
        writer.enqueue(record("u1", model: "gpt", route: "upstream", latency: 100, prompt: 10, completion: 5, cost: 0.01, at: 1_000))
        writer.enqueue(record("u2", model: "gpt", route: "upstream", status: 502, latency: 300, prompt: 0, completion: 0, cost: nil, at: 2_000))
        writer.enqueue(record("l1", model: "mine", route: "local", latency: 50, prompt: 1_000_000, completion: 500_000, cost: 0, at: 3_000))
        writer.enqueue(record("l2", model: "mine", route: "local", latency: 70, prompt: 0, completion: 0, cost: nil, at: 4_000))
        writer.enqueue(record("old", model: "gpt", route: "upstream", latency: 1, prompt: 1, completion: 1, cost: 1, at: 10))
        let done = DispatchSemaphore(value: 0)
        for (id, signal) in [("u1", FeedbackSignal.rejected), ("u1", .accepted), ("l1", .accepted), ("l2", .edited)] {
            var f = FeedbackRecord(requestID: id, createdAtMillis: 5_000, signal: signal)
            if signal == .edited { f.correction = "better" }
            writer.submitFeedback(f) { _ in done.signal() }
            _ = done.wait(timeout: .now() + 10)
        }
        var score = FeedbackRecord(requestID: "l1", createdAtMillis: 5_001, signal: .score)
        score.value = 4
        writer.submitFeedback(score) { _ in done.signal() }
        _ = done.wait(timeout: .now() + 10)
        writer.close()

        let reader = try SQLiteLogReader(path: path)
        var filter = RequestFilter()
        filter.createdFrom = 1_000
        let report = try UsageReport(queries: reader, filter: filter, baseline: .init(input: 0.15, output: 0.6))
        XCTAssertEqual(report.requestsRead, 4)
        let gpt = try XCTUnwrap(report.rows.first { $0.model == "gpt" })
        XCTAssertEqual(gpt.requests, 2)
        XCTAssertEqual(gpt.errors, 1)
        XCTAssertEqual(gpt.accepted, 1)  // the latest verdict on u1 counts
        XCTAssertEqual(gpt.rejected, 0)
        XCTAssertEqual(gpt.costUSD, 0.01, accuracy: 1e-12)
        XCTAssertEqual(gpt.savedUSD, 0)
        let local = try XCTUnwrap(report.rows.first { $0.route == "local" })
        XCTAssertEqual(local.acceptanceRate, 0.5)
        XCTAssertEqual(local.meanScore, 4)
        // 1M prompt tokens at $0.15 and 0.5M completion tokens at $0.60 per million.
        XCTAssertEqual(local.baselineCostUSD, 0.45, accuracy: 1e-9)
        XCTAssertEqual(local.savedUSD, 0.45, accuracy: 1e-9)
        XCTAssertEqual(report.total.requests, 4)
        XCTAssertEqual(report.total.latency.percentile(1.0), 300)
        XCTAssertEqual(report.total.savedUSD, 0.45 - 0.01, accuracy: 1e-9)

        let json = report.json(from: nil, until: nil)
        XCTAssertEqual(json["total"]?["requests"]?.intValue, 4)
        XCTAssertTrue(report.table().contains("local"))
    }
}
