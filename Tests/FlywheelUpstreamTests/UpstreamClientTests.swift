import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelUpstream
import FlywheelTesting

final class UpstreamClientTests: XCTestCase {
    static let secret = "sk-test-VERY-SECRET-0123456789"
    var server: ScriptedUpstreamServer { .shared }
    var client: UpstreamClient!
    /// The loop the client runs on (curl_multi_socket_action mode), as it runs on an HTTP event loop in the daemon.
    var driver: TestEventLoop?

    override func setUpWithError() throws {
        _ = server
        let driver = TestEventLoop()
        self.driver = driver
        client = try UpstreamClient(driver: driver)
    }

    override func tearDown() {
        client.shutdown()
        client = nil
        driver?.stop()
        driver = nil
    }

    private func endpoint(_ name: String = "fake", url: String? = nil, key: String? = secret,
                          headers: [(String, String)] = []) -> UpstreamEndpoint {
        UpstreamEndpoint(name: name, baseURL: url ?? server.baseURL, apiKey: key, headers: headers)
    }

    private func fastRetry(_ maxRetries: Int = 2) -> RetryPolicy {
        RetryPolicy(maxRetries: maxRetries, initialBackoff: 0.01, maxBackoff: 5)
    }

    private func run(_ request: UpstreamRequest, seconds: Double = 10) -> RecordingHandler {
        let handler = RecordingHandler()
        client.start(request, handler: handler)
        XCTAssertTrue(handler.wait(seconds: seconds), "transfer did not complete in \(seconds)s")
        return handler
    }

    private func elapsed(_ from: UInt64, _ to: UInt64) -> Double { Double(to &- from) / 1e9 }

    private func uniqueKey() -> String { UUID().uuidString }

    /// Returns once the fake server has counted `count` hits of `key` (it answers /await when they happened).
    private func awaitServerHits(_ key: String, _ count: Int, file: StaticString = #filePath, line: UInt = #line) {
        let handler = run(UpstreamRequest(method: "GET", path: "/await?key=\(key)&n=\(count)", endpoints: [endpoint()]),
                          seconds: 15)
        XCTAssertTrue(handler.bodyText.contains(#""hits": \#(count)"#), "server saw \(handler.bodyText)",
                      file: file, line: line)
    }

    // MARK: tests

    func testPostRoundTripSendsKeyAndHeaders() throws {
        let ep = endpoint(headers: [("OpenAI-Organization", "org-42")])
        let request = UpstreamRequest(
            path: "/echo",
            headers: [("Content-Type", "application/json"), ("X-Trace", "abc"), ("Content-Length", "999")],
            body: Array(#"{"model":"m","messages":[]}"#.utf8),
            endpoints: [ep])
        let handler = run(request)
        guard case .success(let timing)? = handler.result else { return XCTFail("\(String(describing: handler.result))") }
        let head = try XCTUnwrap(handler.head)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.endpoint, "fake")
        XCTAssertEqual(head.attempts, 1)
        XCTAssertEqual(head.value(for: "content-type"), "application/json")
        XCTAssertNotNil(timing.firstByteNanos)
        XCTAssertGreaterThanOrEqual(timing.finishedNanos, timing.startedNanos)

        let json = try JSONSerialization.jsonObject(with: Data(handler.bodyText.utf8)) as! [String: Any]
        XCTAssertEqual(json["method"] as? String, "POST")
        XCTAssertEqual(json["path"] as? String, "/v1/echo")
        XCTAssertEqual(json["body"] as? String, #"{"model":"m","messages":[]}"#)
        var received: [String: String] = [:]
        for pair in json["headers"] as! [[String]] { received[pair[0].lowercased()] = pair[1] }
        XCTAssertEqual(received["authorization"], "Bearer \(Self.secret)")
        XCTAssertEqual(received["openai-organization"], "org-42")
        XCTAssertEqual(received["x-trace"], "abc")
        XCTAssertEqual(received["content-type"], "application/json")
        XCTAssertEqual(received["content-length"], "27")
        XCTAssertEqual(received["user-agent"], "flywheel")
        XCTAssertNil(received["expect"])
        XCTAssertTrue(handler.state.withLock { $0.orderViolations.isEmpty && $0.completions == 1 })
    }

    func testGetAndTrailingSlashBaseURL() throws {
        let request = UpstreamRequest(method: "GET", path: "echo",
                                      endpoints: [endpoint(url: server.baseURL + "/")])
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertTrue(handler.bodyText.contains(#""method": "GET""#), handler.bodyText)
        XCTAssertTrue(handler.bodyText.contains(#""path": "/v1/echo""#), handler.bodyText)
    }

    func testRequestAuthorizationPassesThroughWithoutEndpointKey() throws {
        let request = UpstreamRequest(path: "/echo", headers: [("authorization", "Bearer client-key")],
                                      body: Array("x=1".utf8), endpoints: [endpoint(key: nil)])
        let handler = run(request)
        XCTAssertTrue(handler.bodyText.contains("Bearer client-key"))
        XCTAssertFalse(handler.bodyText.lowercased().contains("content-type"), "curl must not add a form type")
        // With an endpoint key, the request's own Authorization is replaced.
        let replaced = run(UpstreamRequest(path: "/echo", headers: [("AUTHORIZATION", "Bearer client-key")],
                                           endpoints: [endpoint()]))
        XCTAssertFalse(replaced.bodyText.contains("client-key"))
        XCTAssertTrue(replaced.bodyText.contains("Bearer \(Self.secret)"))
    }

    func testStreamingChunksArriveSeparatelyBeforeTheEnd() throws {
        // The server sends event i only after the handler received event i - 1 (each chunk releases the next):
        // a client that buffered the stream would stall it.
        let gate = uniqueKey()
        let client = self.client!
        let releaser = endpoint()
        let handler = RecordingHandler(onChunk: { _ in
            client.start(UpstreamRequest(method: "GET", path: "/release?key=\(gate)", endpoints: [releaser]),
                         handler: RecordingHandler())
        })
        client.start(UpstreamRequest(method: "GET", path: "/sse?n=5&delay=0&gate=\(gate)", endpoints: [endpoint()]),
                     handler: handler)
        XCTAssertTrue(handler.wait(seconds: 20))
        guard case .success? = handler.result else { return XCTFail("\(String(describing: handler.result))") }
        XCTAssertEqual(handler.head?.value(for: "Content-Type"), "text/event-stream")
        XCTAssertEqual(handler.chunkCount, 5, "each event should arrive as its own chunk")
        XCTAssertEqual(handler.bodyText, "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n")
    }

    func testRetryOn503ThenSuccess() throws {
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(uniqueKey())&fail=1&status=503",
                                      endpoints: [endpoint()], retry: fastRetry())
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.attempts, 2)
        XCTAssertTrue(handler.bodyText.contains(#""hit": 2"#), "the 503 body must be swallowed: \(handler.bodyText)")
    }

    func testRetryAfterIsHonoured() throws {
        let request = UpstreamRequest(method: "GET",
                                      path: "/flaky?key=\(uniqueKey())&fail=1&status=429&retry_after=1",
                                      endpoints: [endpoint()], retry: fastRetry())
        let started = RecordingHandler.now()
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.attempts, 2)
        XCTAssertGreaterThanOrEqual(elapsed(started, handler.state.withLock { $0.completedAt }), 0.95,
                                    "the retry must wait for Retry-After")
    }

    func testRetryAfterBeyondTheCapIsNotRetriedSoonerButGoesToTheClient() throws {
        // Asking again after max_backoff (0.2 s) when the upstream said 30 s would only be refused again: the
        // answer, with its Retry-After, goes to the caller at once.
        let request = UpstreamRequest(method: "GET",
                                      path: "/flaky?key=\(uniqueKey())&fail=1&status=429&retry_after=30",
                                      endpoints: [endpoint()],
                                      retry: RetryPolicy(maxRetries: 2, initialBackoff: 0.01, maxBackoff: 0.2))
        let handler = run(request, seconds: 15)
        XCTAssertEqual(handler.head?.status, 429)
        XCTAssertEqual(handler.head?.attempts, 1)
        XCTAssertEqual(handler.head?.headers.first { $0.0.lowercased() == "retry-after" }?.1, "30")
    }

    func testRetryAfterBeyondTheCapMovesToTheNextEndpoint() throws {
        let key = uniqueKey()
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(key)&fail=1&status=503&retry_after=30",
                                      endpoints: [endpoint("a"), endpoint("b")],
                                      retry: RetryPolicy(maxRetries: 2, initialBackoff: 0.01, maxBackoff: 0.2))
        let handler = run(request, seconds: 15)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.endpoint, "b")
        XCTAssertEqual(handler.head?.attempts, 2)
    }

    func testRetryAfterAsAnHTTPDateIsHonoured() throws {
        // A date about a second ahead (whole seconds: it may round down to 0 s, never up past the cap).
        var now = time(nil) + 1
        var parts = tm()
        gmtime_r(&now, &parts)
        var buffer = [CChar](repeating: 0, count: 64)
        let length = strftime(&buffer, buffer.count, "%a, %d %b %Y %H:%M:%S GMT", &parts)
        let date = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let encoded = date.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let request = UpstreamRequest(method: "GET",
                                      path: "/flaky?key=\(uniqueKey())&fail=1&status=503&retry_after=\(encoded)",
                                      endpoints: [endpoint()],
                                      retry: RetryPolicy(maxRetries: 1, initialBackoff: 0.01, maxBackoff: 5))
        let handler = run(request, seconds: 15)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.attempts, 2)
    }

    func testRetryAfterPastTheTotalDeadlineIsNotWaitedFor() throws {
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(uniqueKey())&fail=1&status=503&retry_after=3",
                                      endpoints: [endpoint()],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 2, total: 1),
                                      retry: RetryPolicy(maxRetries: 2, initialBackoff: 0.01, maxBackoff: 5))
        let handler = run(request, seconds: 15)
        XCTAssertEqual(handler.head?.status, 503)
        XCTAssertEqual(handler.head?.attempts, 1)
    }

    func test400IsNotRetried() throws {
        let key = uniqueKey()
        let request = UpstreamRequest(method: "GET", path: "/status?code=400&key=\(key)",
                                      endpoints: [endpoint(), endpoint("second")], retry: fastRetry())
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 400)
        XCTAssertEqual(handler.head?.attempts, 1)
        XCTAssertEqual(handler.head?.endpoint, "fake")
        XCTAssertTrue(handler.bodyText.contains("code 400"))
        guard case .success? = handler.result else { return XCTFail("a 400 is a complete response") }
        let hits = run(UpstreamRequest(method: "GET", path: "/hits?key=status:\(key)", endpoints: [endpoint()]))
        XCTAssertTrue(hits.bodyText.contains(#""hits": 1"#), hits.bodyText)
    }

    func testExhaustedRetriesDeliverTheLast429() throws {
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(uniqueKey())&fail=99&status=429",
                                      endpoints: [endpoint()], retry: fastRetry(2))
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 429)
        XCTAssertEqual(handler.head?.attempts, 3)
        XCTAssertTrue(handler.bodyText.contains("status 429 on hit 3"), handler.bodyText)
        guard case .success? = handler.result else { return XCTFail("\(String(describing: handler.result))") }
    }

    func testFallbackToSecondEndpointWhenFirstRefuses() throws {
        let request = UpstreamRequest(path: "/echo",
                                      endpoints: [endpoint("dead", url: server.deadURL), endpoint("alive")],
                                      retry: fastRetry(1))
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.endpoint, "alive")
        XCTAssertEqual(handler.head?.attempts, 3)
    }

    func testFallbackAfterRetryableStatusesOnFirstEndpoint() throws {
        let key = uniqueKey()
        // The first endpoint answers 503 twice (both attempts on it); the fallback then sees hit 3 → 200.
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(key)&fail=2&status=503",
                                      endpoints: [endpoint("a"), endpoint("b")], retry: fastRetry(1))
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.head?.endpoint, "b")
        XCTAssertEqual(handler.head?.attempts, 3)
    }

    func testConnectFailureExhaustedReportsErrorWithoutKey() throws {
        let request = UpstreamRequest(path: "/echo", endpoints: [endpoint("dead", url: server.deadURL)],
                                      retry: fastRetry(1))
        let handler = run(request)
        XCTAssertNil(handler.head)
        guard case .connectFailed(let name, let reason)? = handler.error else {
            return XCTFail("expected connectFailed, got \(String(describing: handler.result))")
        }
        XCTAssertEqual(name, "dead")
        XCTAssertEqual(reason.cause, .connectionRefused)
        XCTAssertTrue(reason.message.contains("\(server.deadPort)"), "the log keeps the address: \(reason.message)")
        XCTAssertEqual(handler.error?.publicSummary, "connection refused")
        XCTAssertFalse(handler.error!.publicSummary.contains("127.0.0.1"))
        XCTAssertEqual(handler.completion?.attempts, 2)
        let description = handler.error!.description
        XCTAssertTrue(description.contains("dead"), description)
        XCTAssertFalse(description.contains(Self.secret))
        XCTAssertFalse(String(describing: request.endpoints[0]).contains(Self.secret))
    }

    func testResetMidStreamIsATransferFailureWithANeutralSummary() throws {
        let handler = run(UpstreamRequest(method: "GET", path: "/reset", endpoints: [endpoint()], retry: fastRetry()))
        guard case .transferFailed(let name, let reason)? = handler.error else {
            return XCTFail("expected transferFailed, got \(String(describing: handler.result))")
        }
        XCTAssertEqual(name, "fake")
        XCTAssertEqual(reason.cause, .connectionReset, reason.message)
        XCTAssertEqual(handler.error?.publicSummary, "connection reset")
        XCTAssertTrue(reason.message.contains("curl error"), reason.message)
    }

    func testFirstByteTimeout() throws {
        let request = UpstreamRequest(path: "/hang", endpoints: [endpoint()],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 0.3, total: 10),
                                      retry: fastRetry(0))
        let started = RecordingHandler.now()
        let handler = run(request)
        XCTAssertEqual(handler.error, .timedOut(endpoint: "fake", phase: "first byte", seconds: 0.3))
        XCTAssertEqual(handler.error?.publicSummary, "timed out waiting for the response")
        XCTAssertGreaterThanOrEqual(elapsed(started, handler.state.withLock { $0.completedAt }), 0.29)
    }

    func testFirstByteTimeoutIsRetriedThenFallsBack() throws {
        let request = UpstreamRequest(path: "/echo",
                                      endpoints: [endpoint("hangs", url: server.baseURL + "/hang?x="), endpoint("ok")],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 0.2, total: 10),
                                      retry: fastRetry(1))
        let handler = run(request)
        XCTAssertEqual(handler.head?.endpoint, "ok")
        XCTAssertEqual(handler.head?.attempts, 3)
    }

    func testTotalTimeoutWhileStreaming() throws {
        // The first event comes at once, the second two minutes later: only the total limit ends the stream.
        let request = UpstreamRequest(method: "GET", path: "/sse?n=2&delay=120", endpoints: [endpoint()],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 5, total: 0.6))
        let started = RecordingHandler.now()
        let handler = run(request)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.chunkCount, 1)
        XCTAssertEqual(handler.error, .timedOut(endpoint: "fake", phase: "total", seconds: 0.6))
        XCTAssertGreaterThanOrEqual(elapsed(started, handler.state.withLock { $0.completedAt }), 0.55)
    }

    func testAStreamThatStallsAfterItsHeadEndsAtTheIdleLimit() throws {
        let request = UpstreamRequest(method: "GET", path: "/sse?n=2&delay=120", endpoints: [endpoint(), endpoint("second")],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 5, total: 60, idle: 0.4),
                                      retry: fastRetry())
        let handler = run(request, seconds: 30)
        XCTAssertEqual(handler.head?.status, 200)
        XCTAssertEqual(handler.chunkCount, 1)
        XCTAssertEqual(handler.head?.attempts, 1, "bytes were delivered: no retry, no fallback")
        XCTAssertEqual(handler.error, .timedOut(endpoint: "fake", phase: "next byte", seconds: 0.4))
        XCTAssertEqual(handler.error?.publicSummary, "the response stalled")
    }

    func testEveryByteRestartsTheIdleLimit() throws {
        // 8 events 0.2 s apart: 1.4 s in all, longer than the idle limit, each gap well under it.
        let request = UpstreamRequest(method: "GET", path: "/sse?n=8&delay=0.2", endpoints: [endpoint()],
                                      timeouts: UpstreamTimeouts(connect: 2, firstByte: 5, total: 60, idle: 1))
        let handler = run(request, seconds: 30)
        XCTAssertNil(handler.error)
        XCTAssertEqual(handler.bodyText.components(separatedBy: "data: ").count - 1, 8)
    }

    func testCancelMidStreamCompletesWithoutWaitingForTheNextEvent() throws {
        let transferBox = Mutex<UpstreamTransfer?>(nil)
        let handler = RecordingHandler(onChunk: { count in
            guard count == 1 else { return }
            // Cancel from another thread, as a disconnecting client would.
            DispatchQueue.global().async { transferBox.withLock { $0 }?.cancel() }
        })
        // The next event is two minutes away: the transfer can only complete in time by being cancelled.
        let request = UpstreamRequest(method: "GET", path: "/sse?n=3&delay=120", endpoints: [endpoint()])
        let transfer = client.start(request, handler: handler)
        transferBox.withLock { $0 = transfer }
        XCTAssertTrue(handler.wait(seconds: 10))
        XCTAssertEqual(handler.error, .cancelled)
        XCTAssertTrue(transfer.isCompleted)
        transfer.cancel()  // idempotent after completion
        XCTAssertEqual(handler.state.withLock { $0.completions }, 1)
        XCTAssertEqual(client.activeTransfers, 0)
    }

    func testCancelDuringBackoff() throws {
        let key = uniqueKey()
        let request = UpstreamRequest(method: "GET", path: "/flaky?key=\(key)&fail=99&status=503",
                                      endpoints: [endpoint()],
                                      retry: RetryPolicy(maxRetries: 3, initialBackoff: 60, maxBackoff: 60))
        let handler = RecordingHandler()
        let transfer = client.start(request, handler: handler)
        awaitServerHits("flaky:\(key)", 1)
        transfer.cancel()
        XCTAssertTrue(handler.wait(seconds: 10), "cancel must not wait out the 60 s backoff")
        XCTAssertEqual(handler.error, .cancelled)
        XCTAssertNil(handler.head, "the swallowed 503 must not reach the handler")
    }

    func testManyConcurrentRequestsAllComplete() throws {
        let count = 200
        let handlers = (0..<count).map { _ in RecordingHandler() }
        let client = self.client!
        let ep = endpoint()
        DispatchQueue.concurrentPerform(iterations: 4) { part in
            for i in stride(from: part, to: count, by: 4) {
                let request = UpstreamRequest(path: "/echo", body: Array("request \(i)".utf8), endpoints: [ep])
                client.start(request, handler: handlers[i])
            }
        }
        for (i, handler) in handlers.enumerated() {
            XCTAssertTrue(handler.wait(seconds: 20), "request \(i) did not complete")
            XCTAssertEqual(handler.head?.status, 200)
            XCTAssertTrue(handler.bodyText.contains("request \(i)\""), "request \(i) got another body")
        }
        XCTAssertEqual(client.activeTransfers, 0)
    }

    func testShutdownCompletesPendingTransfers() throws {
        let key = uniqueKey()
        let handlers = (0..<3).map { _ in RecordingHandler() }
        for handler in handlers {
            client.start(UpstreamRequest(path: "/hang?key=\(key)", endpoints: [endpoint()]), handler: handler)
        }
        let backoff = RecordingHandler()
        client.start(UpstreamRequest(method: "GET", path: "/flaky?key=\(key)&fail=99",
                                     endpoints: [endpoint()], retry: RetryPolicy(initialBackoff: 60, maxBackoff: 60)),
                     handler: backoff)
        awaitServerHits("hang:\(key)", 3)
        awaitServerHits("flaky:\(key)", 1)
        XCTAssertEqual(client.activeTransfers, 4)
        client.shutdown()
        for handler in handlers + [backoff] {
            XCTAssertTrue(handler.wait(seconds: 1))
            XCTAssertEqual(handler.error, .shutdown)
        }
        client.shutdown()  // idempotent
        let late = RecordingHandler()
        client.start(UpstreamRequest(path: "/echo", endpoints: [endpoint()]), handler: late)
        XCTAssertTrue(late.wait(seconds: 1))
        XCTAssertEqual(late.error, .shutdown)
        XCTAssertEqual(client.activeTransfers, 0)
    }

    func testInvalidRequests() throws {
        let none = run(UpstreamRequest(path: "/echo", endpoints: []))
        guard case .invalidRequest? = none.error else { return XCTFail("\(String(describing: none.result))") }
        let badURL = run(UpstreamRequest(path: "/echo", endpoints: [endpoint(url: "ftp://x")]))
        guard case .invalidRequest? = badURL.error else { return XCTFail("\(String(describing: badURL.result))") }
        let injected = run(UpstreamRequest(path: "/echo", headers: [("X-A", "1\r\nX-B: 2")], endpoints: [endpoint()]))
        guard case .invalidRequest? = injected.error else { return XCTFail("\(String(describing: injected.result))") }
    }

    func testErrorDescriptionsNeverContainTheKey() {
        let errors: [UpstreamError] = [
            .connectFailed(endpoint: "e", reason: .init(cause: .connectionRefused, message: "m")),
            .timedOut(endpoint: "e", phase: "total", seconds: 1),
            .transferFailed(endpoint: "e", reason: .init(cause: .connectionReset, message: "m")), .cancelled,
            .invalidRequest("x"), .shutdown,
        ]
        for error in errors { XCTAssertFalse(error.description.contains(Self.secret)) }
        // Messages built from curl output are scrubbed even if the key shows up in them.
        let scheduler = try! TransferScheduler(configuration: .init(), loop: driver!)
        let job = TransferJob(request: UpstreamRequest(path: "/x", endpoints: [endpoint()]),
                              handler: RecordingHandler(), scheduler: scheduler)
        XCTAssertEqual(job.redacted("oops \(Self.secret)!"), "oops <redacted>!")
    }

    func testInterimResponsesAreIgnored() throws {
        let handler = run(UpstreamRequest(method: "GET", path: "/early", endpoints: [endpoint()]))
        let head = try XCTUnwrap(handler.head)
        XCTAssertEqual(head.status, 201)
        XCTAssertEqual(head.value(for: "x-final"), "yes")
        XCTAssertNil(head.value(for: "link"), "headers of the 103 block must not leak into the final head")
        XCTAssertEqual(handler.bodyText, #"{"created": true}"#)
    }

    func testCancelFromInsideTheHeadCallback() throws {
        final class CancelOnHead: UpstreamResponseHandler {
            let transfer = Mutex<UpstreamTransfer?>(nil)
            let recorder = RecordingHandler()
            func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
                recorder.upstreamDidReceiveHead(head)
                transfer.withLock { $0 }?.cancel()
            }
            func upstreamDidReceiveBody(_ chunk: [UInt8]) { recorder.upstreamDidReceiveBody(chunk) }
            func upstreamDidComplete(_ completion: UpstreamCompletion) {
                recorder.upstreamDidComplete(completion)
            }
        }
        let handler = CancelOnHead()
        let transfer = client.start(UpstreamRequest(method: "GET", path: "/sse?n=20&delay=0.2", endpoints: [endpoint()]),
                                    handler: handler)
        handler.transfer.withLock { $0 = transfer }
        XCTAssertTrue(handler.recorder.wait(seconds: 3))
        XCTAssertEqual(handler.recorder.error, .cancelled)
        XCTAssertLessThanOrEqual(handler.recorder.chunkCount, 1)
    }

    func testStartFromInsideACompletionCallback() throws {
        final class Chain: UpstreamResponseHandler {
            let client: UpstreamClient
            let request: UpstreamRequest
            let left = Atomic<Int>(5)
            let done = DispatchSemaphore(value: 0)
            init(client: UpstreamClient, request: UpstreamRequest) { self.client = client; self.request = request }
            func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {}
            func upstreamDidReceiveBody(_ chunk: [UInt8]) {}
            func upstreamDidComplete(_ completion: UpstreamCompletion) {
                if completion.succeeded, left.subtract(1, ordering: .relaxed).newValue > 0 {
                    client.start(request, handler: self)
                } else {
                    done.signal()
                }
            }
        }
        let chain = Chain(client: client, request: UpstreamRequest(path: "/echo", endpoints: [endpoint()]))
        client.start(chain.request, handler: chain)
        XCTAssertEqual(chain.done.wait(timeout: .now() + 5), .success)
        XCTAssertEqual(chain.left.load(ordering: .relaxed), 0)
    }

    func testHelpers() throws {
        XCTAssertEqual(TransferJob.joinURL("http://h/v1", "/chat"), "http://h/v1/chat")
        XCTAssertEqual(TransferJob.joinURL("http://h/v1/", "/chat"), "http://h/v1/chat")
        XCTAssertEqual(TransferJob.joinURL("http://h/v1/", "chat"), "http://h/v1/chat")
        XCTAssertEqual(TransferJob.joinURL("http://h/v1", "chat"), "http://h/v1/chat")
        let status = Array("HTTP/2 429 \r\n".utf8).withUnsafeBytes { TransferJob.parseStatus($0, end: $0.count) }
        XCTAssertEqual(status, 429)
        XCTAssertTrue(TransferJob.equalsIgnoringCase("Retry-After", "retry-after"))
        XCTAssertFalse(TransferJob.equalsIgnoringCase("Retry-Afte", "retry-after"))
        XCTAssertTrue(TransferJob.isDropped("Content-Length"))
        XCTAssertFalse(TransferJob.isDropped("Content-Type"))
        let policy = RetryPolicy(initialBackoff: 0.2, maxBackoff: 1)
        for retry in 1...6 {
            let nanos = try XCTUnwrap(policy.backoffNanos(retry: retry, retryAfter: nil))
            let base = min(0.2 * Double(1 << (retry - 1)), 1) * 1e9
            XCTAssertGreaterThanOrEqual(Double(nanos), base / 2 - 1)
            XCTAssertLessThanOrEqual(Double(nanos), base + 1)
        }
        XCTAssertNil(policy.backoffNanos(retry: 1, retryAfter: 30), "longer than the cap: not retried sooner")
        XCTAssertEqual(policy.backoffNanos(retry: 1, retryAfter: 1), 1_000_000_000)
        XCTAssertEqual(policy.backoffNanos(retry: 1, retryAfter: 0), 0)
    }

    // MARK: the driver's loop thread

    func testShutdownFromTheDriverThreadAndReleasesEverything() throws {
        let driver = try XCTUnwrap(self.driver)
        let handler = RecordingHandler()
        let key = uniqueKey()
        client.start(UpstreamRequest(path: "/hang?key=\(key)", endpoints: [endpoint()]), handler: handler)
        awaitServerHits("hang:\(key)", 1)
        let client = self.client!
        let done = DispatchSemaphore(value: 0)
        driver.execute {
            client.shutdown()  // on the driver thread: closes at once
            XCTAssertEqual(client.activeTransfers, 0)
            XCTAssertEqual(driver.watchCount, 0)
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 2), .success)
        XCTAssertTrue(handler.wait(seconds: 1))
        XCTAssertEqual(handler.error, .shutdown)
    }

    func testShutdownAfterTheDriverStoppedDoesNotHang() throws {
        let handler = RecordingHandler()
        let key = uniqueKey()
        client.start(UpstreamRequest(path: "/hang?key=\(key)", endpoints: [endpoint()]), handler: handler)
        awaitServerHits("hang:\(key)", 1)
        driver?.stop()
        driver = nil
        client.shutdown()  // the hop is dropped: cleanup runs here
        XCTAssertTrue(handler.wait(seconds: 1))
        XCTAssertEqual(handler.error, .shutdown)
        let late = RecordingHandler()
        client.start(UpstreamRequest(path: "/echo", endpoints: [UpstreamEndpoint(name: "fake", baseURL: server.baseURL)]),
                     handler: late)
        XCTAssertEqual(late.error, .shutdown)
    }

    func testStartAndCancelOnTheDriverThreadActDirectly() throws {
        let driver = try XCTUnwrap(self.driver)
        let client = self.client!
        let ep = UpstreamEndpoint(name: "fake", baseURL: server.baseURL)
        let handlers = (0..<20).map { _ in RecordingHandler() }
        let hanging = RecordingHandler()
        let started = DispatchSemaphore(value: 0)
        driver.execute {
            for (i, handler) in handlers.enumerated() {
                client.start(UpstreamRequest(path: "/echo", body: Array("n\(i)".utf8), endpoints: [ep]), handler: handler)
            }
            let transfer = client.start(UpstreamRequest(path: "/hang", endpoints: [ep]), handler: hanging)
            XCTAssertEqual(client.activeTransfers, 21)
            transfer.cancel()  // acts at once on the driver thread
            XCTAssertTrue(transfer.isCompleted)
            started.signal()
        }
        XCTAssertEqual(started.wait(timeout: .now() + 2), .success)
        XCTAssertEqual(hanging.error, .cancelled)
        for handler in handlers {
            XCTAssertTrue(handler.wait(seconds: 5))
            XCTAssertEqual(handler.head?.status, 200)
        }
        XCTAssertEqual(client.activeTransfers, 0)
    }

    func testCallbacksComeOnTheDriverThread() throws {
        final class ThreadCheck: UpstreamResponseHandler {
            let driver: TestEventLoop
            let recorder = RecordingHandler()
            let offThread = Atomic<Int>(0)
            init(driver: TestEventLoop) { self.driver = driver }
            func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
                if !driver.inDriverThread { offThread.add(1, ordering: .relaxed) }
                recorder.upstreamDidReceiveHead(head)
            }
            func upstreamDidReceiveBody(_ chunk: [UInt8]) {
                if !driver.inDriverThread { offThread.add(1, ordering: .relaxed) }
                recorder.upstreamDidReceiveBody(chunk)
            }
            func upstreamDidComplete(_ completion: UpstreamCompletion) {
                if !driver.inDriverThread { offThread.add(1, ordering: .relaxed) }
                recorder.upstreamDidComplete(completion)
            }
        }
        let handler = ThreadCheck(driver: try XCTUnwrap(driver))
        client.start(UpstreamRequest(method: "GET", path: "/sse?n=3&delay=0.01",
                                     endpoints: [UpstreamEndpoint(name: "fake", baseURL: server.baseURL)]),
                     handler: handler)
        XCTAssertTrue(handler.recorder.wait(seconds: 5))
        XCTAssertNil(handler.recorder.error)
        XCTAssertEqual(handler.offThread.load(ordering: .relaxed), 0)
    }
}
