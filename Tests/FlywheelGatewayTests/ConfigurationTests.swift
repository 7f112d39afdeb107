import XCTest
@testable import FlywheelGateway

final class ConfigurationTests: XCTestCase {
    func testFullExampleFileParses() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config/flywheel.example.yaml").path
        let c = try GatewayConfiguration.load(path: path, environment: ["OPENAI_API_KEY": "sk-test", "FLYWHEEL_WEBHOOK_SECRET": "s"])
        XCTAssertFalse(c.upstreams.isEmpty)
        XCTAssertFalse(c.routes.isEmpty)
        XCTAssertEqual(c.upstreams.first?.apiKey, "sk-test")
    }

    func testEnvironmentReferencesResolve() throws {
        let c = try GatewayConfiguration.parse(yaml: """
        auth: {keys: [{id: team-a, key_env: TEAM_A}]}
        feedback: {webhook_secret_env: HOOK}
        upstreams: [{name: u, base_url: "https://example.invalid/v1", api_key_env: UP}]
        routes: [{model: "*", upstream: u}]
        """, environment: ["TEAM_A": "sk-a", "HOOK": "h", "UP": "sk-up"])
        XCTAssertEqual(c.auth.keys, [.init(id: "team-a", key: "sk-a")])
        XCTAssertEqual(c.feedback.webhookSecret, "h")
        XCTAssertEqual(c.upstreams.first?.apiKey, "sk-up")
    }

    func testMissingEnvironmentVariableIsAClearError() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", api_key_env: NOPE}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("NOPE"), "\(error)")
        }
    }

    func testRouteToUnknownUpstreamIsRejected() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1"}]
        routes: [{model: m, upstreams: [v]}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("unknown upstream 'v'"), "\(error)")
        }
    }

    func testWrongTypeNamesThePath() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {max_connections: lots}")) { error in
            XCTAssertTrue("\(error)".contains("server.max_connections"), "\(error)")
        }
    }

    func testBadListenAddressAndURLAreRejected() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {listen: nowhere}"))
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "upstreams: [{name: u, base_url: \"ftp://x\"}]"))
        XCTAssertEqual(try ListenAddress(parsing: "[::1]:8080"), try ListenAddress(parsing: "[::1]:8080"))
        XCTAssertEqual(try ListenAddress(parsing: ":9000").host, "0.0.0.0")
        XCTAssertThrowsError(try ListenAddress(parsing: "127.0.0.1:99999"))
    }

    func testUnknownKeysAreRejectedWithTheirPath() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {shutdown_grase: 5}")) { error in
            XCTAssertTrue("\(error)".contains("unknown key 'shutdown_grase' in server"), "\(error)")
        }
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", timeouts: {conect: 1}}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("upstreams[0].timeouts"), "\(error)")
        }
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "routs: []")) { error in
            XCTAssertTrue("\(error)".contains("at the top level"), "\(error)")
        }
        XCTAssertNoThrow(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", headers: {OpenAI-Organization: org-1}}]
        prices: {some-model: {input: 1, output: 2}}
        """))
    }
}
