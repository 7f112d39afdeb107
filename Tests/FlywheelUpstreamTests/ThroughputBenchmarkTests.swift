import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelUpstream

/// Opt-in (FLYWHEEL_UPSTREAM_BENCH=1): requests/s with 64 in flight and sequential latency against MiniHTTPServer.
final class ThroughputBenchmarkTests: XCTestCase {
    final class Loop: UpstreamResponseHandler {
        let client: UpstreamClient
        let request: UpstreamRequest
        let remaining: Atomic<Int>
        let done = DispatchSemaphore(value: 0)
        let failures = Atomic<Int>(0)
        init(client: UpstreamClient, request: UpstreamRequest, total: Int) {
            self.client = client
            self.request = request
            remaining = Atomic(total)
        }
        func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {}
        func upstreamDidReceiveBody(_ chunk: [UInt8]) {}
        func upstreamDidComplete(_ completion: UpstreamCompletion) {
            if !completion.succeeded { failures.add(1, ordering: .relaxed) }
            if remaining.subtract(1, ordering: .relaxed).newValue >= 0 {
                client.start(request, handler: self)  // next one, from the loop thread
            } else {
                done.signal()
            }
        }
    }

    /// The client in curl_multi_socket_action mode on a `TestEventLoop`.
    func testThroughput() throws {
        guard ProcessInfo.processInfo.environment["FLYWHEEL_UPSTREAM_BENCH"] == "1" else {
            throw XCTSkip("set FLYWHEEL_UPSTREAM_BENCH=1 to run")
        }
        let server = try MiniHTTPServer()
        defer { server.stop() }
        let driver = TestEventLoop()
        defer { driver.stop() }
        let client = try UpstreamClient(driver: driver)
        defer { client.shutdown() }
        try measure(client: client, port: server.port, label: "event loop")
    }

    private func measure(client: UpstreamClient, port: Int, label: String) throws {
        let request = UpstreamRequest(
            path: "/chat/completions", headers: [("Content-Type", "application/json")],
            body: Array(#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#.utf8),
            endpoints: [UpstreamEndpoint(name: "mini", baseURL: "http://127.0.0.1:\(port)/v1", apiKey: "k")])

        // Sequential latency, started from the test thread (a hop in, a semaphore out).
        var latencies: [Double] = []
        for _ in 0..<2000 {
            let loop = Loop(client: client, request: request, total: 0)
            client.start(request, handler: loop)
            loop.done.wait()
        }
        for _ in 0..<2000 {
            let loop = Loop(client: client, request: request, total: 0)
            let t0 = DispatchTime.now().uptimeNanoseconds
            client.start(request, handler: loop)
            loop.done.wait()
            latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1000)
        }
        latencies.sort()
        print("[\(label)] sequential round trip p50 \(latencies[1000]) µs, p99 \(latencies[1980]) µs")

        // "1 in flight" is sequential too, chained from the completion callback: no thread hop.
        for inFlight in [1, 16, 64] {
            let total = 40_000
            let loops = (0..<inFlight).map { _ in Loop(client: client, request: request, total: total / inFlight) }
            let t0 = DispatchTime.now().uptimeNanoseconds
            for loop in loops { client.start(request, handler: loop) }
            for loop in loops { loop.done.wait() }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            let failures = loops.reduce(0) { $0 + $1.failures.load(ordering: .relaxed) }
            print("[\(label)] \(inFlight) in flight: \(Int(Double(total + inFlight) / seconds)) requests/s, failures \(failures)")
            XCTAssertEqual(failures, 0)
        }
    }
}
