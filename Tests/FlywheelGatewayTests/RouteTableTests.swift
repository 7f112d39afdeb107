import FlywheelTesting
import XCTest

/// The route table and the access step, through the real gateway.
final class RouteTableTests: XCTestCase {
    typealias Config = GatewayTestConfiguration

    func testUnknownPathIs404AndWrongMethodIs405WithAllow() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()

        let unknown = try client.get("/v1/nothing-here")
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(unknown.json?["error"]?["code"]?.stringValue, "unknown_url")
        XCTAssertNotNil(unknown.header("x-request-id"))

        let getChat = try client.get("/v1/chat/completions")
        XCTAssertEqual(getChat.status, 405)
        XCTAssertEqual(getChat.header("Allow"), "POST")
        XCTAssertEqual(getChat.json?["error"]?["code"]?.stringValue, "method_not_allowed")

        let postHealth = try client.post("/healthz", json: "{}")
        XCTAssertEqual(postHealth.status, 405)
        XCTAssertEqual(postHealth.header("Allow"), "GET, HEAD")

        let deleteModel = try client.request("DELETE", "/v1/models/fake-model")
        XCTAssertEqual(deleteModel.status, 405)
        XCTAssertEqual(deleteModel.header("Allow"), "GET")

        XCTAssertEqual(try client.get("/healthz/").status, 200, "one trailing slash is tolerated")
        XCTAssertEqual(try client.request("HEAD", "/health").status, 200)
        XCTAssertEqual(fake.requests.count, 0, "none of these reached the upstream")
        gateway.stop()
        XCTAssertEqual(try gateway.database.requestCount(), 0, "only inference endpoints are logged")
    }

    func testKeysAreRequiredForAPIEndpointsAndRefusalsOfInferenceAreLogged() throws {
        let fake = try FakeUpstream()
        let keys = """
        auth:
          keys:
            - id: team-a
              key: sk-flywheel-a
        """
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake, extra: keys))
        let client = try gateway.connect()

        let refused = try client.post("/v1/chat/completions", json: Config.chatBody("let me in"),
                                      headers: [("x-request-id", "no-key-1"), ("Authorization", "Bearer sk-wrong")])
        XCTAssertEqual(refused.status, 401)
        XCTAssertEqual(refused.json?["error"]?["code"]?.stringValue, "invalid_api_key")
        let refusedRow = try XCTUnwrap(gateway.loggedRequest("no-key-1"), "refused inference requests are logged")
        XCTAssertEqual(refusedRow.status, 401)
        XCTAssertEqual(refusedRow.errorType, "invalid_api_key")
        XCTAssertNil(refusedRow.clientKeyID)

        XCTAssertEqual(try client.get("/v1/models").status, 401)
        XCTAssertEqual(try client.post("/v1/feedback", json: #"{"request_id":"no-key-1","signal":"accepted"}"#).status, 401)
        XCTAssertEqual(try client.get("/healthz").status, 200, "health checks stay open")
        XCTAssertEqual(try client.get("/metrics").status, 200, "metrics scrapes stay open")
        XCTAssertEqual(fake.requests.count, 0)

        let accepted = try client.post("/v1/chat/completions", json: Config.chatBody("let me in"),
                                       headers: [("x-request-id", "key-1"), ("Authorization", "Bearer sk-flywheel-a")])
        XCTAssertEqual(accepted.status, 200, accepted.text)
        XCTAssertEqual(try XCTUnwrap(gateway.loggedRequest("key-1")).clientKeyID, "team-a")
        XCTAssertEqual(fake.requests.first?.header("Authorization"), "Bearer \(Config.upstreamKey)",
                       "the client's Flywheel key never goes upstream")
        XCTAssertEqual(try client.get("/v1/models", headers: [("Authorization", "Bearer sk-flywheel-a")]).status, 200)
    }
}
