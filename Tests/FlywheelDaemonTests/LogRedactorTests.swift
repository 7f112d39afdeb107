import XCTest
import FlywheelConfig
import FlywheelStore
@testable import FlywheelDaemon

final class LogRedactorTests: XCTestCase {
    private func record(_ request: String, response: String? = nil) -> RequestRecord {
        var r = RequestRecord(id: "r", createdAtMillis: 1, method: "POST", endpoint: "/v1/chat/completions",
                              requestJSON: request, status: 200, latencyMillis: 1)
        r.responseJSON = response
        return r
    }

    func testEveryStringIsScrubbedTheJSONStaysValidAndStructuralFieldsStay() throws {
        let redactor = LogRedactor()
        // The address arrives escaped (\\u0040): found once the JSON is parsed.
        var r = record(#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane\u0040example.com, card 4111 1111 1111 1111"}],"n":1}"#,
                       response: #"{"choices":[{"message":{"role":"assistant","content":"call +44 20 7946 0958"}}],"usage":{"total_tokens":9}}"#)
        r.user = "jane@example.com"
        r.errorMessage = "upstream said: who is bob@example.com?"
        r.metadataJSON = #"{"owner":"ops@example.com"}"#
        redactor.redact(&r)
        XCTAssertEqual(r.requestJSON, #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail <EMAIL>, card <CARD>"}],"n":1}"#)
        XCTAssertEqual(r.responseJSON, #"{"choices":[{"message":{"role":"assistant","content":"call <PHONE>"}}],"usage":{"total_tokens":9}}"#)
        XCTAssertEqual(r.user, "<EMAIL>")
        XCTAssertEqual(r.errorMessage, "upstream said: who is <EMAIL>?")
        XCTAssertEqual(r.metadataJSON, #"{"owner":"<EMAIL>"}"#)
        XCTAssertEqual(redactor.counts["EMAIL"], 4)
        XCTAssertEqual(redactor.counts["CARD"], 1)
    }

    func testTextThatIsNotJSONIsScrubbedAsText() {
        let redactor = LogRedactor()
        var r = record("not json: jane@example.com")
        redactor.redact(&r)
        XCTAssertEqual(r.requestJSON, "not json: <EMAIL>")
    }

    /// Bounded cost: text beyond the per-row budget is never scanned and never stored.
    func testAStringBeyondTheBudgetIsReplacedNotStoredUnscrubbed() throws {
        let redactor = LogRedactor()
        let huge = String(repeating: "a", count: LogRedactor.maxScannedBytes) + " jane@example.com"
        var r = record(#"{"messages":[{"role":"user","content":"small bob@example.com"},{"role":"user","content":"\#(huge)"}]}"#)
        redactor.redact(&r)
        XCTAssertFalse(r.requestJSON.contains("example.com"))
        XCTAssertTrue(r.requestJSON.contains(LogRedactor.tooLargePlaceholder))
        XCTAssertTrue(r.requestJSON.contains("small <EMAIL>"))
        XCTAssertLessThan(r.requestJSON.utf8.count, 1_000)
    }

    func testRowsWithoutContentAreLeftAlone() {
        let redactor = LogRedactor()
        var r = record("")
        r.contentWithheld = true
        r.user = "jane@example.com"
        redactor.redact(&r)
        XCTAssertEqual(r.user, "jane@example.com")  // metadata only: never parsed, never changed
        XCTAssertEqual(redactor.counts, [:])
    }
}

final class RetentionPlanTests: XCTestCase {
    func testThePlanScansUpToTheShortestRetentionAndGivesEachRowItsCutoff() throws {
        let config = try GatewayConfiguration.parse(yaml: """
            upstreams: [{name: u, base_url: "https://example.invalid/v1", api_key: k}]
            routes: [{model: "short-*", upstream: u, retention_days: 1}, {model: "*", upstream: u}]
            log: {retention_days: 10, retention_days_with_feedback: 100, prune_batch_size: 7}
            """)
        let now: Int64 = 1_000 * 86_400_000
        let plan = try XCTUnwrap(RetentionJob.plan(config, nowMillis: now))
        XCTAssertEqual(plan.scanBefore, now - 86_400_000)
        XCTAssertEqual(plan.batchSize, 7)
        XCTAssertEqual(plan.cutoff("short-a", false), now - 86_400_000)
        XCTAssertEqual(plan.cutoff("gpt", false), now - 10 * 86_400_000)
        XCTAssertEqual(plan.cutoff("gpt", true), now - 100 * 86_400_000)
        XCTAssertEqual(plan.cutoff(nil, false), now - 10 * 86_400_000)
        XCTAssertNil(RetentionJob.plan(try GatewayConfiguration.parse(yaml: "log: {path: x.db}"), nowMillis: now))
    }
}
