import FlywheelTesting
import XCTest
@testable import FlywheelGateway

final class GatewayMetricsTests: XCTestCase {
    private func render(_ metrics: GatewayMetrics) -> String {
        metrics.render(.init(logQueueDepth: 0, logDropped: 0, logWritten: 0, logWriteErrors: 0, openConnections: 0))
    }

    func testTheLogsHealthIsExposedWithEveryStorageReason() {
        var gauges = GatewayMetrics.Gauges(logQueueDepth: 7, logDropped: 3, logWritten: 0, logWriteErrors: 0, openConnections: 0)
        let healthy = GatewayMetrics().render(gauges)
        XCTAssertTrue(healthy.contains("\nflywheel_log_healthy 1\n"))
        XCTAssertTrue(healthy.contains("flywheel_log_storage_errors_total{reason=\"disk_full\"} 0\n"), "every reason is listed from the start")
        gauges.logHealthy = false
        gauges.logHeldRows = 5
        gauges.logStorageErrors = ["disk_full": 4, "io_error": 1]
        let failing = GatewayMetrics().render(gauges)
        for line in ["flywheel_log_healthy 0", "flywheel_log_held_rows 5", "flywheel_log_queue_depth 7", "flywheel_log_dropped_total 3",
                     "flywheel_log_storage_errors_total{reason=\"disk_full\"} 4", "flywheel_log_storage_errors_total{reason=\"io_error\"} 1",
                     "flywheel_log_storage_errors_total{reason=\"read_only\"} 0", "flywheel_log_storage_errors_total{reason=\"cant_open\"} 0"] {
            XCTAssertTrue(failing.contains("\n" + line + "\n"), line)
        }
    }

    func testCRLFAndQuotesInAModelNameCannotBreakALine() {
        let metrics = GatewayMetrics()
        metrics.requestStarted()
        metrics.requestFinished(endpoint: "/v1/chat/completions", model: "evil\r\n# TYPE x counter\nx{a=\"1\"} 9\\", route: "upstream",
                                status: 200, seconds: 0.1, overheadSeconds: 0.001, firstByteSeconds: nil)
        let text = render(metrics)
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where line.hasPrefix("flywheel_requests_total") {
            XCTAssertFalse(line.contains("\r"))
            XCTAssertTrue(line.hasSuffix("} 1"), String(line))
        }
        XCTAssertFalse(text.contains("\nx{a="))
        XCTAssertTrue(text.contains(#"evil\ufffd\n# TYPE x counter\nx{a=\"1\"} 9\\"#.replacingOccurrences(of: "\\ufffd", with: "\u{FFFD}")))
    }

    func testLongModelNamesAreCutAndSeriesAreBounded() {
        let metrics = GatewayMetrics()
        let long = String(repeating: "é", count: 10_000)
        metrics.requestStarted()
        metrics.requestFinished(endpoint: "/v1/completions", model: long, route: "upstream", status: 200,
                                seconds: 0.1, overheadSeconds: nil, firstByteSeconds: nil)
        let text = render(metrics)
        XCTAssertLessThan(text.utf8.count, 20_000)
        let label = GatewayMetrics.labelValue(long)
        XCTAssertLessThanOrEqual(label.utf8.count, GatewayMetrics.maxLabelBytes)
        XCTAssertTrue(label.hasSuffix("…"))
        XCTAssertTrue(label.dropLast().allSatisfy { $0 == "é" })  // cut on a character boundary

        for i in 0..<(GatewayMetrics.maxSeries + 50) {
            metrics.requestStarted()
            metrics.requestFinished(endpoint: "/v1/completions", model: "m\(i)", route: "upstream", status: 200,
                                    seconds: 0.1, overheadSeconds: nil, firstByteSeconds: nil)
        }
        let series = render(metrics).split(separator: "\n").filter { $0.hasPrefix("flywheel_requests_total{") }
        XCTAssertLessThanOrEqual(series.count, GatewayMetrics.maxSeries + 1)
        XCTAssertTrue(series.contains { $0.contains(#"model="other""#) })
    }

    func testRequestsThatNeverReachedARouteAreLabelledUnknownOrNone() {
        let metrics = GatewayMetrics()
        metrics.requestStarted()
        metrics.requestFinished(endpoint: "/v1/chat/completions", model: "nope", route: nil, status: 404,
                                seconds: 0.1, overheadSeconds: 0.1, firstByteSeconds: nil)
        metrics.requestStarted()
        metrics.requestFinished(endpoint: "/v1/chat/completions", model: nil, route: nil, status: 400,
                                seconds: 0.1, overheadSeconds: 0.1, firstByteSeconds: nil)
        let text = render(metrics)
        XCTAssertTrue(text.contains(#"model="unknown",route="unknown",status="404""#), text)
        XCTAssertTrue(text.contains(#"model="none",route="none",status="400""#), text)
        XCTAssertFalse(text.contains(#"model="""#))
    }
}

/// `/metrics` through the real gateway, fed by real requests.
final class GatewayMetricsEndToEndTests: XCTestCase {
    typealias Config = GatewayTestConfiguration

    func testClientChosenModelNamesAreEscapedInTheScrape() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        // Quote, backslash, line feed and carriage return in the model name (JSON-escaped in the body).
        let body = #"{"model":"we\"ird\\name\nx{a=\"1\"} 9\rz","messages":[{"role":"user","content":"hi"}]}"#
        XCTAssertEqual(try client.post("/v1/chat/completions", json: body).status, 200)

        let scrape = try client.get("/metrics")
        XCTAssertEqual(scrape.status, 200)
        XCTAssertTrue(scrape.header("Content-Type")?.hasPrefix("text/plain; version=0.0.4") ?? false)
        let text = scrape.text
        XCTAssertFalse(text.contains("\r"))
        let expected = #"model="we\"ird\\name\nx{a=\"1\"} 9"# + "\u{FFFD}" + #"z""#
        let lines = text.split(separator: "\n")
        let line = try XCTUnwrap(lines.first { $0.hasPrefix("flywheel_requests_total") && $0.contains("we\\\"ird") }, text)
        XCTAssertTrue(line.contains(expected), String(line))
        XCTAssertTrue(line.contains(#"status="200""#) && line.hasSuffix("} 1"), String(line))
        // Every line is a comment or one sample: the name cannot start a line of its own.
        for line in lines where !line.hasPrefix("#") {
            XCTAssertTrue(line.hasPrefix("flywheel_"), "injected line: \(line)")
        }
    }
}
