import FlywheelJSON
import FlywheelStore
import FlywheelTesting
import XCTest
@testable import FlywheelGateway

/// The proxied exchange end to end: the real gateway on loopback, a fake upstream, the real SQLite log.
final class ProxyExchangeTests: XCTestCase {
    typealias Config = GatewayTestConfiguration

    func testProxiedChatIsLoggedOnceWithUsageRouteUpstreamAndTimeToFirstByte() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        let response = try client.post("/v1/chat/completions", json: Config.chatBody("hello there world"),
                                       headers: [("x-request-id", "chat-plain-1"), ("Authorization", "Bearer client-key")])
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.header("x-request-id"), "chat-plain-1")
        XCTAssertEqual(response.header("x-flywheel-upstream"), "fake")
        XCTAssertEqual(response.header("x-upstream-request-id"), "fake-upstream-request")
        let json = try XCTUnwrap(response.json)
        XCTAssertEqual(json["choices"]?[0]?["message"]?["content"]?.stringValue, "hello there world")
        XCTAssertEqual(json["usage"]?["total_tokens"]?.intValue, 8)

        // The upstream got the upstream's key, never the client's.
        let sent = try XCTUnwrap(fake.requests.first)
        XCTAssertEqual(sent.target, "/v1/chat/completions")
        XCTAssertEqual(sent.header("Authorization"), "Bearer \(Config.upstreamKey)")

        let row = try XCTUnwrap(gateway.loggedRequest("chat-plain-1"))
        XCTAssertEqual(row.status, 200)
        XCTAssertEqual(row.endpoint, "/v1/chat/completions")
        XCTAssertEqual(row.route, "upstream")
        XCTAssertEqual(row.upstream, "fake")
        XCTAssertEqual(row.attempts, 1)
        XCTAssertFalse(row.stream)
        XCTAssertFalse(row.incomplete)
        XCTAssertEqual(row.modelRequested, "fake-model")
        XCTAssertEqual(row.modelServed, "fake-model")
        XCTAssertEqual(row.promptTokens, 5)
        XCTAssertEqual(row.completionTokens, 3)
        XCTAssertEqual(row.totalTokens, 8)
        XCTAssertNotNil(row.timeToFirstTokenMillis)
        XCTAssertNotNil(row.upstreamMillis)
        XCTAssertNil(row.errorType)
        XCTAssertEqual(row.responseJSON, response.text, "the log keeps the upstream's bytes as sent")
        gateway.stop()
        XCTAssertEqual(try gateway.database.requestCount(), 1, "logged exactly once")
    }

    func testStreamedChatIsForwardedChunkByChunkAndLoggedAssembled() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        try client.send(TestHTTPClient.postBytes("/v1/chat/completions",
                                                 json: Config.chatBody("one two three", stream: true, includeUsage: true),
                                                 headers: [("x-request-id", "chat-stream-1")]))
        let head = try client.readHead()
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.header("Content-Type"), "text/event-stream")
        XCTAssertTrue(head.isChunked)
        let events = try client.readAllEvents()
        // Role chunk, three words, finish chunk, usage chunk, [DONE], each as the upstream sent it.
        XCTAssertEqual(events.count, 7, "\(events)")
        XCTAssertEqual(events.last, "[DONE]")
        let parsed = events.dropLast().compactMap { try? JSONParser.parse($0) }
        XCTAssertEqual(parsed[0]["choices"]?[0]?["delta"]?["role"]?.stringValue, "assistant")
        XCTAssertEqual(parsed[1...3].compactMap { $0["choices"]?[0]?["delta"]?["content"]?.stringValue }.joined(), "one two three")
        XCTAssertEqual(parsed[4]["choices"]?[0]?["finish_reason"]?.stringValue, "stop")
        XCTAssertEqual(parsed[5]["usage"]?["completion_tokens"]?.intValue, 3)

        let row = try XCTUnwrap(gateway.loggedRequest("chat-stream-1"))
        XCTAssertEqual(row.status, 200)
        XCTAssertTrue(row.stream)
        XCTAssertFalse(row.incomplete)
        XCTAssertEqual(row.route, "upstream")
        XCTAssertEqual(row.upstream, "fake")
        XCTAssertEqual(row.promptTokens, 5)
        XCTAssertEqual(row.completionTokens, 3)
        XCTAssertEqual(row.totalTokens, 8)
        XCTAssertNotNil(row.timeToFirstTokenMillis)
        let assembled = try XCTUnwrap(row.responseJSON.flatMap { try? JSONParser.parse($0) })
        XCTAssertEqual(assembled["choices"]?[0]?["message"]?["content"]?.stringValue, "one two three")
        XCTAssertEqual(assembled["choices"]?[0]?["finish_reason"]?.stringValue, "stop")
        gateway.stop()
        XCTAssertEqual(try gateway.database.requestCount(), 1)
    }

    func testClientLeavingMidStreamCancelsTheUpstreamAndLogs499WithThePartialResponse() throws {
        let fake = try FakeUpstream()
        fake.enqueue(.streamForever)
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        try client.send(TestHTTPClient.postBytes("/v1/chat/completions", json: Config.chatBody("hi", stream: true),
                                                 headers: [("x-request-id", "chat-leaves-1")]))
        XCTAssertEqual(try client.readHead().status, 200)
        for _ in 0..<5 { XCTAssertNotNil(try client.readEvent()) }
        client.close()

        // The gateway cancels the upstream transfer: the never-ending stream sees its client go.
        XCTAssertEqual(fake.events.wait(FakeUpstream.Event.clientLeft, atLeast: 1), 1)
        let row = try XCTUnwrap(gateway.loggedRequest("chat-leaves-1"))
        XCTAssertEqual(row.status, 499)
        XCTAssertEqual(row.errorType, "client_closed_request")
        XCTAssertTrue(row.incomplete)
        XCTAssertTrue(row.stream)
        let partial = try XCTUnwrap(row.responseJSON.flatMap { try? JSONParser.parse($0) })
        let text = try XCTUnwrap(partial["choices"]?[0]?["message"]?["content"]?.stringValue)
        XCTAssertTrue(text.hasPrefix("w0 w1 w2 w3"), "the partial response is logged: \(text)")
        gateway.drainEventLoops()
        XCTAssertEqual(ExchangeCensus.proxies.load(ordering: .relaxed), 0, "the cancelled exchange was released")
    }

    func testUpstreamClosingMidStreamEndsTheStreamWithAnErrorEventAndLogsTheDetail() throws {
        let fake = try FakeUpstream()
        fake.enqueue(.closeMidStream(afterWords: 2))
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        try client.send(TestHTTPClient.postBytes("/v1/chat/completions", json: Config.chatBody("hi", stream: true),
                                                 headers: [("x-request-id", "chat-cut-1")]))
        XCTAssertEqual(try client.readHead().status, 200)
        let events = try client.readAllEvents()
        XCTAssertEqual(events.count, 4, "role chunk, two words, then the gateway's error event: \(events)")
        let error = try XCTUnwrap(events.last.flatMap { try? JSONParser.parse($0) }?["error"])
        XCTAssertEqual(error["code"]?.stringValue, "upstream_unavailable")
        let message = try XCTUnwrap(error["message"]?.stringValue)
        XCTAssertFalse(message.contains("127.0.0.1") || message.contains("\(fake.port)"), "no address in: \(message)")

        let row = try XCTUnwrap(gateway.loggedRequest("chat-cut-1"))
        XCTAssertEqual(row.status, 200, "the head went out before the failure")
        XCTAssertEqual(row.errorType, "upstream_unavailable")
        XCTAssertTrue(row.errorMessage?.contains("fake") ?? false, "\(String(describing: row.errorMessage))")
        XCTAssertTrue(row.responseJSON?.contains("w0 w1") ?? false, "\(String(describing: row.responseJSON))")
    }

    func testRetriedStatusesAreLoggedWithTheirAttempts() throws {
        let fake = try FakeUpstream()
        fake.enqueue(.status(503), count: 2)
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake, retries: 2))
        let client = try gateway.connect()
        let response = try client.post("/v1/chat/completions", json: Config.chatBody("again"),
                                       headers: [("x-request-id", "retried-1")])
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(fake.requests.count, 3)
        let row = try XCTUnwrap(gateway.loggedRequest("retried-1"))
        XCTAssertEqual(row.status, 200)
        XCTAssertEqual(row.attempts, 3)
        XCTAssertEqual(row.upstream, "fake")

        // Retries exhausted: the last upstream answer is passed on, and logged with its error.
        fake.enqueue(.status(503), count: 3)
        let failed = try client.post("/v1/chat/completions", json: Config.chatBody("again"), headers: [("x-request-id", "retried-2")])
        XCTAssertEqual(failed.status, 503)
        XCTAssertEqual(failed.json?["error"]?["message"]?.stringValue, "fake upstream fault: status 503")
        let failedRow = try XCTUnwrap(gateway.loggedRequest("retried-2"))
        XCTAssertEqual(failedRow.status, 503)
        XCTAssertEqual(failedRow.attempts, 3)
        XCTAssertEqual(failedRow.errorType, "server_error")
        XCTAssertEqual(failedRow.errorMessage, "fake upstream fault: status 503")
    }

    func testFallbackToTheNextUpstreamIsLoggedWithAttemptsAndTheUpstreamThatAnswered() throws {
        let fake = try FakeUpstream()
        let down = "http://127.0.0.1:\(LoopbackPort.unused())/v1"
        let yaml = Config.yaml(upstreams: [Config.upstream("down", url: down, retries: 1), Config.upstream("fake", url: fake.baseURL)],
                               routes: [Config.route("*", ["down", "fake"])])
        let gateway = try GatewayHarness(yaml: yaml)
        let response = try gateway.connect().post("/v1/chat/completions", json: Config.chatBody("fall back"),
                                                  headers: [("x-request-id", "fallback-1")])
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.header("x-flywheel-upstream"), "fake")
        let row = try XCTUnwrap(gateway.loggedRequest("fallback-1"))
        XCTAssertEqual(row.upstream, "fake")
        XCTAssertEqual(row.attempts, 3, "two refused attempts on 'down', then 'fake'")
        XCTAssertEqual(row.completionTokens, 2)
    }

    func testUpstreamDownIs502WithANeutralMessageAndTheDetailInTheLog() throws {
        let port = LoopbackPort.unused()
        let yaml = Config.yaml(upstreams: [Config.upstream("down", url: "http://127.0.0.1:\(port)/v1", retries: 0)],
                               routes: [Config.route("*", ["down"])])
        let gateway = try GatewayHarness(yaml: yaml)
        let response = try gateway.connect().post("/v1/chat/completions", json: Config.chatBody("anyone?"),
                                                  headers: [("x-request-id", "down-1")])
        XCTAssertEqual(response.status, 502)
        let error = try XCTUnwrap(response.json?["error"])
        XCTAssertEqual(error["code"]?.stringValue, "upstream_unavailable")
        let message = try XCTUnwrap(error["message"]?.stringValue)
        XCTAssertTrue(message.contains("'down'"), message)
        XCTAssertFalse(message.contains("127.0.0.1") || message.contains("\(port)"), "the client must not see the address: \(message)")

        let row = try XCTUnwrap(gateway.loggedRequest("down-1"))
        XCTAssertEqual(row.status, 502)
        XCTAssertEqual(row.errorType, "upstream_unavailable")
        XCTAssertTrue(row.errorMessage?.contains("\(port)") ?? false, "the log keeps the detail: \(String(describing: row.errorMessage))")
        XCTAssertEqual(row.attempts, 1)
    }

    func testHangingUpstreamAnswersOnceReleased() throws {
        let fake = try FakeUpstream()
        fake.enqueue(.hang)
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        try client.send(TestHTTPClient.postBytes("/v1/embeddings", json: #"{"model":"fake-model","input":["a b","c"]}"#,
                                                 headers: [("x-request-id", "hang-1")]))
        XCTAssertEqual(fake.events.wait(FakeUpstream.Event.hanging, atLeast: 1), 1)
        XCTAssertEqual(gateway.log.events.count("enqueued:hang-1"), 0, "not logged while the upstream has not answered")
        XCTAssertEqual(ExchangeCensus.proxies.load(ordering: .relaxed), 1, "the census counts the exchange in flight")
        fake.releaseHanging()
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.json?["data"]?[1]?["embedding"]?[0]?.doubleValue, 1)
        let row = try XCTUnwrap(gateway.loggedRequest("hang-1"))
        XCTAssertEqual(row.promptTokens, 3)
        XCTAssertFalse(row.stream)
    }

    func testNoExchangeOutlivesItsRequestAfterThousandsOfRequests() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        gateway.drainEventLoops()
        let before = ExchangeCensus.proxies.load(ordering: .relaxed)
        XCTAssertEqual(before, 0, "an earlier test left exchanges alive")
        let total = 2_000
        var clients = try (0..<4).map { _ in try gateway.connect() }
        for index in 0..<total {
            let client = clients[index % clients.count]
            let stream = index % 2 == 0
            try client.send(TestHTTPClient.postBytes("/v1/chat/completions", json: Config.chatBody("n \(index)", stream: stream)))
            if stream {
                XCTAssertEqual(try client.readHead().status, 200)
                XCTAssertEqual(try client.readAllEvents().last, "[DONE]")
            } else {
                XCTAssertEqual(try client.readResponse().status, 200)
            }
        }
        clients = []
        XCTAssertTrue(gateway.log.waitUntilStored(count: total))
        gateway.drainEventLoops()
        XCTAssertEqual(ExchangeCensus.proxies.load(ordering: .relaxed), 0, "exchanges kept alive after their requests ended")
        XCTAssertEqual(try gateway.database.requestCount(filter: RequestFilter(status: 200)), total)
    }
}
