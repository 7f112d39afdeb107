import FlywheelConfig
import XCTest
@testable import FlywheelGateway

final class ModelRouterTests: XCTestCase {
    func configuration() throws -> GatewayConfiguration {
        try GatewayConfiguration.parse(yaml: """
        upstreams:
          - {name: a, base_url: "http://127.0.0.1:1/v1", api_key: ka}
          - {name: b, base_url: "http://127.0.0.1:2/v1"}
        routes:
          - {model: gpt-4o-mini, upstreams: [a, b], upstream_model: gpt-4o-mini-2024-07-18}
          - {model: "claude-?-*", upstreams: [b], name: anthropic}
          - {model: "llama*", upstreams: [b]}
        """)
    }

    func testExactRouteKeepsFallbackOrderAndRename() throws {
        let router = ModelRouter(configuration: try configuration())
        let route = try XCTUnwrap(router.route(forModel: "gpt-4o-mini"))
        XCTAssertEqual(route.endpoints.map(\.name), ["a", "b"])
        XCTAssertEqual(route.endpoints.first?.apiKey, "ka")
        XCTAssertEqual(route.upstreamModel, "gpt-4o-mini-2024-07-18")
        XCTAssertEqual(route.name, "upstream")
    }

    func testGlobRoutesMatchAndUnknownModelHasNoRoute() throws {
        let router = ModelRouter(configuration: try configuration())
        XCTAssertEqual(router.route(forModel: "claude-3-haiku")?.name, "anthropic")
        XCTAssertNil(router.route(forModel: "claude-haiku"))
        XCTAssertNotNil(router.route(forModel: "llama"))
        XCTAssertNotNil(router.route(forModel: "llama-3.1-8b"))
        XCTAssertNil(router.route(forModel: "gpt-4o"))
        XCTAssertNil(router.route(forModel: ""))
        XCTAssertEqual(router.exactModelNames, ["gpt-4o-mini"])
    }

    func testGlobMatcherHandlesBacktracking() {
        XCTAssertTrue(ModelPattern("*a*b*c").matches("xxaxxbxxbxc"))
        XCTAssertFalse(ModelPattern("*a*b*c").matches("xxaxxbxxbx"))
        XCTAssertTrue(ModelPattern("*").matches(""))
        XCTAssertTrue(ModelPattern("a?c").matches("abc"))
        XCTAssertFalse(ModelPattern("a?c").matches("ac"))
        // Pathological pattern stays fast (no exponential recursion).
        let long = String(repeating: "a", count: 5_000)
        XCTAssertFalse(ModelPattern(String(repeating: "*a", count: 20) + "b").matches(long))
    }

    func testUpstreamURLOverrideRoutesEverything() {
        var c = GatewayConfiguration()
        c.applyOverrides(listen: "127.0.0.1:0", database: "/tmp/x.db", upstreamURL: "http://127.0.0.1:9/v1/", upstreamKey: "k")
        XCTAssertEqual(c.upstreams.first?.baseURL, "http://127.0.0.1:9/v1")
        XCTAssertEqual(c.log.path, "/tmp/x.db")
        let router = ModelRouter(configuration: c)
        XCTAssertEqual(router.route(forModel: "anything")?.endpoints.first?.apiKey, "k")
        XCTAssertNotNil(router.catchAll)
    }
}

final class ModelPatternBytesTests: XCTestCase {
    func testQuestionMarkMatchesOneScalarOfAnyLength() {
        XCTAssertTrue(ModelPattern("a?c").matches("aéc"))
        XCTAssertTrue(ModelPattern("a?c").matches("a🙂c"))
        XCTAssertFalse(ModelPattern("a?c").matches("aééc"))
        XCTAssertTrue(ModelPattern("modèle-*").matches("modèle-7b"))
    }

    func testLongNameIsMatchedWithoutBlowingUp() {
        // A 4 MiB name against a backtracking pattern: matched on bytes, no Character array.
        let name = String(repeating: "x", count: 4 << 20)
        XCTAssertFalse(ModelPattern("*y*").matches(name))
        XCTAssertTrue(ModelPattern("x*").matches(name))
    }
}

final class ASCIICaseTests: XCTestCase {
    func testByteLevelCaseInsensitiveTests() {
        XCTAssertTrue("Application/JSON; charset=utf-8".containsIgnoringASCIICase("json"))
        XCTAssertTrue("application/vnd.api+json".containsIgnoringASCIICase("json"))
        XCTAssertFalse("text/html".containsIgnoringASCIICase("json"))
        XCTAssertFalse("jso".containsIgnoringASCIICase("json"))
        XCTAssertTrue("JSON".containsIgnoringASCIICase("json"))
        XCTAssertTrue("Text/Event-Stream; x".hasPrefixIgnoringASCIICase("text/event-stream"))
        XCTAssertFalse("text/event".hasPrefixIgnoringASCIICase("text/event-stream"))
        XCTAssertTrue("Retry-After".equalsIgnoringASCIICase("retry-after"))
        XCTAssertFalse("Retry-After2".equalsIgnoringASCIICase("retry-after"))
        XCTAssertFalse("é".containsIgnoringASCIICase("e"))
    }
}
