import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelUpstream
import FlywheelTesting

/// Proves that nothing in the client keeps a finished transfer alive, even when the handler keeps its
/// `UpstreamTransfer` the way the gateway's exchange does (handler → transfer → job → handler).
final class TransferLifetimeTests: XCTestCase {
    /// Shared by the handlers of one test: counts live handlers and completions by outcome.
    final class Probe: Sendable {
        let handlersAlive = Atomic<Int>(0)
        let outcomes = Mutex<[String: Int]>([:])
        let completions = DispatchSemaphore(value: 0)

        func count(_ outcome: String) -> Int { outcomes.withLock { $0[outcome, default: 0] } }
    }

    /// Keeps its transfer; optionally cancels it once the head arrived (from inside the head callback, or when
    /// the transfer is attached after the head came).
    final class KeepingHandler: UpstreamResponseHandler {
        private struct State {
            var transfer: UpstreamTransfer?
            var sawHead = false
        }
        let probe: Probe
        let cancelOnHead: Bool
        private let state = Mutex(State())

        init(probe: Probe, cancelOnHead: Bool = false) {
            self.probe = probe
            self.cancelOnHead = cancelOnHead
            probe.handlersAlive.add(1, ordering: .relaxed)
        }

        deinit { probe.handlersAlive.subtract(1, ordering: .relaxed) }

        func attach(_ transfer: UpstreamTransfer) {
            let cancelNow = state.withLock { s -> Bool in
                s.transfer = transfer
                return cancelOnHead && s.sawHead
            }
            if cancelNow { transfer.cancel() }
        }

        func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
            let transfer = state.withLock { s -> UpstreamTransfer? in
                s.sawHead = true
                return s.transfer
            }
            if cancelOnHead { transfer?.cancel() }
        }

        func upstreamDidReceiveBody(_ chunk: [UInt8]) {}

        func upstreamDidComplete(_ completion: UpstreamCompletion) {
            let outcome: String
            switch completion.error {
            case nil: outcome = "success"
            case .connectFailed?: outcome = "connectFailed"
            case .timedOut?: outcome = "timedOut"
            case .transferFailed?: outcome = "transferFailed"
            case .cancelled?: outcome = "cancelled"
            case .invalidRequest?: outcome = "invalidRequest"
            case .shutdown?: outcome = "shutdown"
            }
            probe.outcomes.withLock { $0[outcome, default: 0] += 1 }
            probe.completions.signal()
        }
    }

    final class WeakJob {
        weak var job: TransferJob?
        init(_ job: TransferJob) { self.job = job }
    }

    var server: ScriptedUpstreamServer { .shared }

    /// Starts `count` transfers of `request`, each with a fresh handler that keeps its transfer. Only weak
    /// references to the jobs stay here.
    private func launch(_ count: Int, _ request: UpstreamRequest, on client: UpstreamClient, probe: Probe,
                        cancelOnHead: Bool = false, cancelAtOnce: Bool = false, jobs: inout [WeakJob]) {
        for _ in 0..<count {
            let handler = KeepingHandler(probe: probe, cancelOnHead: cancelOnHead)
            let transfer = client.start(request, handler: handler)
            jobs.append(WeakJob(transfer.job))
            handler.attach(transfer)
            if cancelAtOnce { transfer.cancel() }
        }
    }

    private func waitForCompletions(_ count: Int, _ probe: Probe, file: StaticString = #filePath, line: UInt = #line) {
        for index in 0..<count {
            guard probe.completions.wait(timeout: .now() + 30) == .success else {
                return XCTFail("only \(index) of \(count) transfers completed", file: file, line: line)
            }
        }
    }

    /// Runs an empty task on the loop and waits for it: every callback, deferred command and hop queued before
    /// has finished, so every reference they held is released.
    private func drain(_ loop: TestEventLoop) {
        let done = DispatchSemaphore(value: 0)
        loop.execute { done.signal() }
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
    }

    func testFinishedTransfersReleaseTheirHandlersAndJobs() throws {
        _ = server
        let mini = try MiniHTTPServer()
        defer { mini.stop() }
        let loop = TestEventLoop()
        defer { loop.stop() }
        let client = try UpstreamClient(driver: loop)
        defer { client.shutdown() }
        let probe = Probe()
        var jobs: [WeakJob] = []
        let alive = UpstreamEndpoint(name: "alive", baseURL: server.baseURL, apiKey: "k")
        let dead = UpstreamEndpoint(name: "dead", baseURL: server.deadURL)
        let fast = RetryPolicy(maxRetries: 1, initialBackoff: 0.001, maxBackoff: 0.01)
        let waves: [(count: Int, request: UpstreamRequest, cancelOnHead: Bool, cancelAtOnce: Bool)] = [
            // Plain successes (a fast keep-alive server).
            (1200, UpstreamRequest(path: "/chat/completions", body: Array("{}".utf8),
                                   endpoints: [UpstreamEndpoint(name: "mini", baseURL: "http://127.0.0.1:\(mini.port)/v1")]),
             false, false),
            // Streamed successes.
            (400, UpstreamRequest(method: "GET", path: "/sse?n=3&delay=0", endpoints: [alive]), false, false),
            // A retryable status, then success on the retry.
            (200, UpstreamRequest(method: "GET", path: "/flaky?key=\(UUID().uuidString)&fail=200&status=503",
                                  endpoints: [alive], retry: RetryPolicy(maxRetries: 1, initialBackoff: 0.001)),
             false, false),
            // Connection refused, retried, then the fallback endpoint answers.
            (200, UpstreamRequest(path: "/echo", endpoints: [dead, alive], retry: fast), false, false),
            // Connection refused on every attempt: an error.
            (300, UpstreamRequest(path: "/echo", endpoints: [dead], retry: fast), false, false),
            // First-byte timeouts: an error reached through the deadline heap.
            (100, UpstreamRequest(path: "/hang", endpoints: [alive],
                                  timeouts: UpstreamTimeouts(connect: 5, firstByte: 0.05, total: 20),
                                  retry: RetryPolicy(maxRetries: 0)), false, false),
            // Cancelled mid-stream from inside the head callback (the stream would otherwise run for minutes).
            (100, UpstreamRequest(method: "GET", path: "/sse?n=2&delay=120", endpoints: [alive]), true, false),
            // Cancelled from this thread while waiting for a head.
            (100, UpstreamRequest(path: "/hang", endpoints: [alive]), false, true),
        ]
        var total = 0
        for wave in waves {
            var started = 0
            while started < wave.count {  // at most 200 in flight
                let count = min(200, wave.count - started)
                launch(count, wave.request, on: client, probe: probe, cancelOnHead: wave.cancelOnHead,
                       cancelAtOnce: wave.cancelAtOnce, jobs: &jobs)
                waitForCompletions(count, probe)
                started += count
            }
            total += wave.count
        }
        drain(loop)

        XCTAssertEqual(probe.count("success"), 1200 + 400 + 200 + 200)
        XCTAssertEqual(probe.count("connectFailed"), 300)
        XCTAssertEqual(probe.count("timedOut"), 100)
        XCTAssertEqual(probe.count("cancelled"), 200)
        XCTAssertEqual(jobs.count, total)
        XCTAssertEqual(client.activeTransfers, 0)
        XCTAssertEqual(probe.handlersAlive.load(ordering: .relaxed), 0, "handlers kept alive after completion")
        XCTAssertEqual(jobs.filter { $0.job != nil }.count, 0, "jobs kept alive after completion")
    }

    func testTransfersEndedByShutdownReleaseTheirHandlersAndJobs() throws {
        _ = server
        let loop = TestEventLoop()
        defer { loop.stop() }
        let client = try UpstreamClient(driver: loop)
        let probe = Probe()
        var jobs: [WeakJob] = []
        let alive = UpstreamEndpoint(name: "alive", baseURL: server.baseURL)
        launch(50, UpstreamRequest(path: "/hang", endpoints: [alive]), on: client, probe: probe, jobs: &jobs)
        launch(50, UpstreamRequest(method: "GET", path: "/flaky?key=\(UUID().uuidString)&fail=9999",
                                   endpoints: [alive], retry: RetryPolicy(maxRetries: 3, initialBackoff: 60)),
               on: client, probe: probe, jobs: &jobs)
        client.shutdown()
        // Started after the shutdown: completed at once on this thread.
        launch(10, UpstreamRequest(path: "/echo", endpoints: [alive]), on: client, probe: probe, jobs: &jobs)
        waitForCompletions(110, probe)
        drain(loop)
        XCTAssertEqual(probe.count("shutdown"), 110)
        XCTAssertEqual(probe.handlersAlive.load(ordering: .relaxed), 0)
        XCTAssertEqual(jobs.filter { $0.job != nil }.count, 0)
    }
}
