import FlywheelTesting
import XCTest

/// `GET /v1/models` through the real gateway: exact routes and the upstream's own list, merged.
final class ModelCatalogTests: XCTestCase {
    typealias Config = GatewayTestConfiguration

    func testModelsMergeExactRoutesWithTheModelsTheUpstreamListsForAWildcardRoute() throws {
        let fake = try FakeUpstream(models: ["fake-a", "fake-b", "other-x", "exact-one"])
        let yaml = Config.yaml(upstreams: [Config.upstream("fake", url: fake.baseURL)],
                               routes: [Config.route("exact-one", ["fake"]), Config.route("fake-*", ["fake"])])
        let gateway = try GatewayHarness(yaml: yaml)
        let client = try gateway.connect()

        let list = try client.get("/v1/models")
        XCTAssertEqual(list.status, 200, list.text)
        XCTAssertEqual(list.json?["object"]?.stringValue, "list")
        let data = try XCTUnwrap(list.json?["data"]?.arrayValue)
        // The exact route first; then what the upstream lists that the wildcard route takes ('other-x' is not
        // routed, 'exact-one' is listed once).
        XCTAssertEqual(data.compactMap { $0["id"]?.stringValue }, ["exact-one", "fake-a", "fake-b"])
        XCTAssertEqual(data[0]["owned_by"]?.stringValue, "flywheel")
        XCTAssertEqual(data[1]["owned_by"]?.stringValue, "fake")

        let one = try client.get("/v1/models/fake-b")
        XCTAssertEqual(one.status, 200)
        XCTAssertEqual(one.json?["id"]?.stringValue, "fake-b")
        let unrouted = try client.get("/v1/models/other-x")
        XCTAssertEqual(unrouted.status, 404)
        XCTAssertEqual(unrouted.json?["error"]?["code"]?.stringValue, "model_not_found")
        XCTAssertEqual(fake.requests.filter { $0.target == "/v1/models" }.count, 1, "the upstream's list is cached")
    }

    func testModelsListIs502WhenTheOnlyUpstreamListCannotBeFetched() throws {
        let down = "http://127.0.0.1:\(LoopbackPort.unused())/v1"
        let yaml = Config.yaml(upstreams: [Config.upstream("down", url: down)], routes: [Config.route("*", ["down"])])
        let gateway = try GatewayHarness(yaml: yaml)
        let response = try gateway.connect().get("/v1/models")
        XCTAssertEqual(response.status, 502)
        XCTAssertEqual(response.json?["error"]?["code"]?.stringValue, "upstream_unavailable")
        XCTAssertFalse(response.text.contains("127.0.0.1"))
    }
}
