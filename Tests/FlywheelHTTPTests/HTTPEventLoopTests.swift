import Dispatch
import FlywheelHTTP
import Foundation
import Synchronization
import XCTest

final class HTTPEventLoopTests: XCTestCase {
    private var server: HTTPServer!

    override func setUpWithError() throws {
        server = try startTestServer()
    }

    override func tearDown() {
        server.shutdown(gracePeriod: 0)
        server = nil
    }

    /// Runs `body` on loop 0 and waits for it.
    private func onLoop(_ body: @escaping @Sendable (HTTPEventLoop) -> Void) {
        let loop = server.eventLoops[0]
        let done = DispatchSemaphore(value: 0)
        loop.execute {
            body(loop)
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
    }

    func testLoopsExistBeforeStartAndWritersKnowTheirLoop() throws {
        let early = HTTPServer(configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), responder: echoResponder)
        XCTAssertFalse(early.eventLoops.isEmpty)
        XCTAssertEqual(early.eventLoops.map(\.index), Array(0..<early.eventLoops.count))
        XCTAssertFalse(early.eventLoops[0].inEventLoop)
        let ran = Atomic<Bool>(false)
        early.eventLoops[0].execute { ran.store(true, ordering: .releasing) }
        try early.start()
        XCTAssertTrue(eventually { ran.load(ordering: .acquiring) })
        early.shutdown(gracePeriod: 0)

        let seen = Mutex<[Int]>([])
        let recording = ClosureResponder { request, writer in
            XCTAssertTrue(writer.eventLoop.inEventLoop)
            seen.withLock { $0.append(writer.eventLoop.index) }
            writer.send(HTTPResponse(status: 200, body: []))
        }
        let other = try startTestServer(responder: recording)
        defer { other.shutdown(gracePeriod: 0) }
        for _ in 0..<4 {
            let client = try TestClient(port: other.port)
            try client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _ = try client.readResponse()
        }
        XCTAssertEqual(Set(seen.withLock { $0 }), [0, 1])
    }

    func testWatchPipeGetsCallbackAndUnwatchInsideCallbackIsSafe() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let readEnd = fds[0], writeEnd = fds[1]
        let calls = Atomic<Int>(0)
        let got = DispatchSemaphore(value: 0)
        onLoop { loop in
            try! loop.watch(descriptor: readEnd, readable: true, writable: false) { readable, writable, error in
                XCTAssertTrue(loop.inEventLoop)
                XCTAssertTrue(readable)
                XCTAssertFalse(writable)
                XCTAssertFalse(error)
                calls.add(1, ordering: .relaxed)
                loop.unwatch(descriptor: readEnd)  // level-triggered: without this it would fire again
                loop.unwatch(descriptor: readEnd)  // twice is harmless
                got.signal()
            }
        }
        var byte: UInt8 = 7
        XCTAssertEqual(write(writeEnd, &byte, 1), 1)
        XCTAssertEqual(got.wait(timeout: .now() + 2), .success)
        usleep(50_000)
        XCTAssertEqual(calls.load(ordering: .relaxed), 1)

        // Re-watch (changing interest to writable on the write end), then remove, from inside callbacks.
        let writable = DispatchSemaphore(value: 0)
        onLoop { loop in
            try! loop.watch(descriptor: writeEnd, readable: true, writable: false) { _, _, _ in XCTFail("not asked") }
            try! loop.watch(descriptor: writeEnd, readable: false, writable: true) { _, isWritable, _ in
                XCTAssertTrue(isWritable)
                loop.unwatch(descriptor: writeEnd)
                writable.signal()
            }
        }
        XCTAssertEqual(writable.wait(timeout: .now() + 2), .success)
    }

    func testWatchingAnInvalidDescriptorThrows() throws {
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        _ = try client.readResponse()
        onLoop { loop in
            do {
                try loop.watch(descriptor: 100_000, readable: true, writable: false) { _, _, _ in }
                XCTFail("expected an error")
            } catch {}
        }
    }

    func testTimerFiresOnTimeNotOnTheTick() throws {
        let lateness = Mutex<[Double]>([])
        let done = DispatchSemaphore(value: 0)
        for delay in [1, 5, 20] {
            onLoop { loop in
                let start = DispatchTime.now().uptimeNanoseconds
                loop.schedule(afterMilliseconds: delay) {
                    XCTAssertTrue(loop.inEventLoop)
                    let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
                    lateness.withLock { $0.append(ms - Double(delay)) }
                    done.signal()
                }
            }
            XCTAssertEqual(done.wait(timeout: .now() + 2), .success)
        }
        let values = lateness.withLock { $0 }
        XCTAssertEqual(values.count, 3)
        for value in values {
            XCTAssertGreaterThanOrEqual(value, -0.01)
            XCTAssertLessThan(value, 100, "timer fired \(value) ms late (the loop tick is 250 ms)")
        }
    }

    func testCancelledTimersDoNotFireAndOrderIsKept() throws {
        let fired = Mutex<[Int]>([])
        let done = DispatchSemaphore(value: 0)
        onLoop { loop in
            let a = loop.schedule(afterMilliseconds: 5) { fired.withLock { $0.append(1) } }
            let b = loop.schedule(afterMilliseconds: 10) { fired.withLock { $0.append(2) } }
            loop.schedule(afterMilliseconds: 3) {
                fired.withLock { $0.append(0) }
                loop.cancel(b)  // cancel another one from inside a callback
            }
            loop.schedule(afterMilliseconds: 0) { fired.withLock { $0.append(-1) } }
            loop.cancel(a)
            loop.cancel(a)
            XCTAssertFalse(a.isPending)
            loop.schedule(afterMilliseconds: 30) { done.signal() }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 2), .success)
        XCTAssertEqual(fired.withLock { $0 }, [-1, 0])
    }
}
