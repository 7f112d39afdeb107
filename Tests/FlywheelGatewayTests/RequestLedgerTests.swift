import FlywheelTesting
import XCTest

/// The ledger's promise to clients: a request's row is written before the client has its answer, so feedback
/// posted right after it (even pipelined behind it on the same connection) always finds the request.
final class RequestLedgerTests: XCTestCase {
    typealias Config = GatewayTestConfiguration

    func testRowIsQueuedBeforeTheLastByteSoPipelinedFeedbackIsAccepted() throws {
        let fake = try FakeUpstream()
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake))
        let client = try gateway.connect()
        let rounds = 50
        for round in 0..<rounds {
            let id = "pipelined-\(round)"
            let stream = round % 2 == 1
            let chat = TestHTTPClient.postBytes("/v1/chat/completions", json: Config.chatBody("round \(round)", stream: stream),
                                                headers: [("x-request-id", id)])
            let feedback = TestHTTPClient.postBytes("/v1/feedback", json: #"{"request_id":"\#(id)","signal":"accepted"}"#)
            try client.send(chat + feedback)  // one write: the feedback waits in the connection behind the request

            let answer = try client.readResponse()
            XCTAssertEqual(answer.status, 200)
            if stream { XCTAssertTrue(answer.text.hasSuffix("data: [DONE]\n\n"), answer.text) }
            // The row was handed to the log before the answer's last byte left: it is there now, without waiting.
            XCTAssertEqual(gateway.log.events.count("enqueued:" + id), 1, "round \(round): the row came after the answer")

            let accepted = try client.readResponse()
            XCTAssertEqual(accepted.status, 200, "round \(round): \(accepted.text)")
            XCTAssertEqual(accepted.json?["request_id"]?.stringValue, id)
            XCTAssertEqual(accepted.json?["duplicate"]?.boolValue, false)
        }
        gateway.stop()
        XCTAssertEqual(try gateway.database.requestCount(), rounds)
        XCTAssertEqual(try gateway.database.feedback(forRequest: "pipelined-49").map(\.signal.rawValue), ["accepted"])
    }

    func testFeedbackForARequestStillBeingAnsweredWaitsForItsRow() throws {
        let fake = try FakeUpstream()
        fake.enqueue(.hang)
        // One event loop: connections are served in the order their bytes arrive, which the barrier below uses.
        let gateway = try GatewayHarness(yaml: Config.catchAll(fake), eventLoops: 1)
        let asking = try gateway.connect()
        try asking.send(TestHTTPClient.postBytes("/v1/chat/completions", json: Config.chatBody("slow"),
                                                 headers: [("x-request-id", "in-flight-1")]))
        XCTAssertEqual(fake.events.wait(FakeUpstream.Event.hanging, atLeast: 1), 1)
        let rating = try gateway.connect()
        try rating.send(TestHTTPClient.postBytes("/v1/feedback", json: #"{"request_id":"in-flight-1","signal":"score","value":4}"#))
        // A barrier: once a later connection's request is answered, the loop has read the feedback (parked, as
        // its request is still in flight; the answer comes only after the row is written).
        XCTAssertEqual(try gateway.connect().get("/healthz").status, 200)
        fake.releaseHanging()
        XCTAssertEqual(try asking.readResponse().status, 200)
        let accepted = try rating.readResponse()
        XCTAssertEqual(accepted.status, 200, accepted.text)
        XCTAssertEqual(try gateway.database.feedback(forRequest: "in-flight-1").first?.value, 4)
    }
}
