import XCTest
@testable import FlywheelConfig

final class LogRetentionTests: XCTestCase {
    private let routes = """
        upstreams: [{name: u, base_url: "https://example.invalid/v1", api_key: k}]
        routes:
          - {model: "gpt-short-*", upstream: u, retention_days: 1}
          - {model: "audit-*", upstream: u, retention_days: forever}
          - {model: "*", upstream: u}
        local_models: [{name: bot, path: /m/bot.gguf, retention_days: 3}]
        """

    func testEachRowGetsTheRetentionOfWhatServesItsModelAndFeedbackKeepsItLonger() throws {
        let c = try GatewayConfiguration.parse(yaml: routes + "\nlog: {retention_days: 30, retention_days_with_feedback: 365, prune_interval: 60, redact: pii}")
        XCTAssertEqual(c.log.redact, .pii)
        XCTAssertEqual(c.log.pruneInterval, 60)
        XCTAssertEqual(c.retention(model: "gpt-4o", hasFeedback: false), .days(30))
        XCTAssertEqual(c.retention(model: nil, hasFeedback: false), .days(30))
        XCTAssertEqual(c.retention(model: "gpt-short-1", hasFeedback: false), .days(1))
        XCTAssertEqual(c.retention(model: "gpt-short-1", hasFeedback: true), .days(365))
        XCTAssertEqual(c.retention(model: "audit-x", hasFeedback: false), .forever)
        XCTAssertEqual(c.retention(model: "audit-x", hasFeedback: true), .forever)
        XCTAssertEqual(c.retention(model: "bot", hasFeedback: false), .days(3))  // local models win over routes
        XCTAssertEqual(c.shortestRetention, .days(1))
        XCTAssertEqual(RetentionPeriod.days(2).cutoff(nowMillis: 10 * 86_400_000), 8 * 86_400_000)
        XCTAssertNil(RetentionPeriod.forever.cutoff(nowMillis: 1))
    }

    func testWithoutRetentionNothingIsPrunedAndFeedbackRowsGoWithTheRest() throws {
        let none = try GatewayConfiguration.parse(yaml: "log: {path: x.db}")
        XCTAssertNil(none.shortestRetention)
        XCTAssertEqual(none.log.redact, .none)
        let same = try GatewayConfiguration.parse(yaml: "log: {retention_days: 10}")
        XCTAssertEqual(same.retention(model: "m", hasFeedback: true), .days(10))
        let keep = try GatewayConfiguration.parse(yaml: "log: {retention_days: 10, retention_days_with_feedback: forever}")
        XCTAssertEqual(keep.retention(model: "m", hasFeedback: true), .forever)
    }

    func testBadValuesAreRejectedNamingTheKey() {
        let cases: [(String, String)] = [
            ("log: {retention_days: 0}", "log.retention_days must be a whole number of days from 1 to 36500, or forever"),
            ("log: {retention_days: 36501}", "log.retention_days must be"),
            ("log: {retention_days: soon}", "expected a whole number of days or 'forever'"),
            ("log: {retention_days: 2.5}", "log.retention_days"),
            ("log: {retention_days: 30, retention_days_with_feedback: 7}", "must be at least log.retention_days"),
            ("log: {retention_days_with_feedback: 7}", "must be at least log.retention_days"),  // the default is forever
            ("log: {redact: all}", "log.redact must be one of none, pii"),
            ("log: {prune_interval: 0}", "log.prune_interval must be 1...86400"),
            ("log: {prune_batch_size: 0}", "log.prune_batch_size must be 1...100000"),
            (routes.replacingOccurrences(of: "retention_days: 1}", with: "retention_days: -1}"), "routes[0] (gpt-short-*): retention_days must be"),
            (routes.replacingOccurrences(of: "retention_days: 3}", with: "retention_days: 0}"), "local_models.bot.retention_days must be"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: yaml), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }
}
