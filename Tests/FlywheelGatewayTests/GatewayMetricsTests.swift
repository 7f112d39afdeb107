import XCTest
@testable import FlywheelGateway

final class GatewayMetricsTests: XCTestCase {
    private func render(_ metrics: GatewayMetrics) -> String {
        metrics.render(.init(logQueueDepth: 0, logDropped: 0, logWritten: 0, logWriteErrors: 0, openConnections: 0))
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
