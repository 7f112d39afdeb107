import XCTest
@testable import FlywheelConfig

final class ConfigurationChangesTests: XCTestCase {
    private func parse(_ yaml: String) throws -> GatewayConfiguration {
        try GatewayConfiguration.parse(yaml: yaml, environment: [:])
    }

    private let base = """
    server: {listen: "127.0.0.1:8080", max_body_bytes: 1000}
    auth: {keys: [{id: a, key: sk-secret-a}]}
    upstreams: [{name: u, base_url: "http://x/v1", api_key: sk-up-1}]
    routes: [{model: "gpt-*", upstream: u}]
    prices: {gpt-4o: {input: 1, output: 2}}
    """

    func testLiveChangesAreNamedWithoutSecrets() throws {
        let old = try parse(base)
        let new = try parse("""
        server: {listen: "127.0.0.1:8080", max_body_bytes: 2000, log_level: debug, access_log: true}
        auth: {keys: [{id: a, key: sk-secret-changed}, {id: b, key: sk-secret-b}]}
        upstreams: [{name: u, base_url: "http://x/v1", api_key: sk-up-2}]
        routes: [{model: "gpt-*", upstream: u}, {model: "x", upstream: u, upstream_model: y}]
        prices: {gpt-4o: {input: 3, output: 2}, gpt-5: {input: 1, output: 1}}
        feedback: {webhook_secret: whsec-s}
        """)
        let c = new.changes(from: old)
        XCTAssertEqual(c.needRestart, [])
        XCTAssertTrue(c.applied.contains("routes: [gpt-*→u] → [gpt-*→u, x→u as y]"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("upstreams: changed [u]"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("auth.keys: added [b], changed [a]"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("prices: added [gpt-5], changed [gpt-4o]"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("feedback.webhook_secret: set"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("server.max_body_bytes: 1000 → 2000"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("server.log_level: info → debug"), "\(c.applied)")
        XCTAssertTrue(c.applied.contains("server.access_log: unset → -"), "\(c.applied)")
        let said = c.applied.joined(separator: "\n")
        for secret in ["sk-secret", "sk-up-", "whsec-s"] { XCTAssertFalse(said.contains(secret), secret) }
    }

    func testRestartOnlySettingsAreNamedAndKeptFromTheRunningConfiguration() throws {
        let old = try parse(base)
        let new = try parse(base.replacingOccurrences(of: "127.0.0.1:8080", with: "0.0.0.0:9000") + """

        log: {path: other.db}
        inference: {slots: 4, max_tokens_limit: 100}
        """)
        let c = new.changes(from: old)
        XCTAssertEqual(c.needRestart, ["server.listen: 127.0.0.1:8080 → 0.0.0.0:9000", "log (path, queue, batching, cache, feedback_durability, prune_interval, redact)",
                                       "inference (threads, slots, queue, prompt chunks, kv_cache_mb)"])
        XCTAssertEqual(c.applied, ["inference.max_tokens_limit: 4096 → 100"])
        let served = new.keepingRestartOnlySettings(of: old)
        XCTAssertEqual(served.server.listen, "127.0.0.1:8080")
        XCTAssertEqual(served.log.path, old.log.path)
        XCTAssertEqual(served.inference.slots, old.inference.slots)
        XCTAssertEqual(served.inference.maxTokensLimit, 100)
    }

    func testRetentionChangesApplyAtOnceAndTheRestOfLogWaits() throws {
        let old = try parse(base)
        let new = try parse(base + """

        log: {retention_days: 30, retention_days_with_feedback: forever, prune_batch_size: 500}
        """)
        let c = new.changes(from: old)
        XCTAssertEqual(c.needRestart, [])
        XCTAssertEqual(Set(c.applied), ["log.retention_days: forever → 30", "log.retention_days_with_feedback: unset → forever",
                                        "log.prune_batch_size: 2000 → 500"])
        let served = new.keepingRestartOnlySettings(of: old)
        XCTAssertEqual(served.log.retentionDays, .days(30))
        XCTAssertEqual(served.log.retentionDaysWithFeedback, .forever)
        XCTAssertEqual(served.log.pruneBatchSize, 500)
    }

    func testNoChangeSaysNothing() throws {
        let c = try parse(base).changes(from: try parse(base))
        XCTAssertEqual(c, ConfigurationChanges())
    }

    func testAYAMLErrorNamesThePlaceButNeverQuotesTheLine() {
        XCTAssertThrowsError(try parse("upstreams:\n  - {name: u, base_url: \"http://x\", api_key: \"sk-do-not-print\n")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("3:") || text.contains("2:"), text)
            XCTAssertFalse(text.contains("sk-do-not-print"), text)
        }
    }

    func testOutputSettingsParseAndAreChecked() throws {
        XCTAssertEqual(try parse("server: {access_log: true}").server.accessLog, "-")
        XCTAssertNil(try parse("server: {access_log: false}").server.accessLog)
        XCTAssertEqual(try parse("server: {access_log: /var/log/fw.log, log_format: json}").server.accessLog, "/var/log/fw.log")
        XCTAssertThrowsError(try parse("server: {log_level: loud}")) { error in
            XCTAssertTrue("\(error)".contains("server.log_level must be one of debug, info, warn, error"), "\(error)")
        }
        XCTAssertThrowsError(try parse("server: {log_format: xml}")) { error in
            XCTAssertTrue("\(error)".contains("server.log_format must be text or json"), "\(error)")
        }
        XCTAssertThrowsError(try parse("server: {access_log: \"\"}")) { error in
            XCTAssertTrue("\(error)".contains("server.access_log"), "\(error)")
        }
    }
}
