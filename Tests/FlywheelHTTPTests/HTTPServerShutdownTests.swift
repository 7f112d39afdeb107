#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import FlywheelHTTP
import XCTest

final class HTTPServerShutdownTests: XCTestCase {
    func testGracefulShutdownFinishesInFlightResponseAndRefusesNewConnections() throws {
        let received = Box(false)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            received.value = true
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.3) {
                writer.send(HTTPResponse(status: 200, body: Array("slow".utf8)))
            }
        })
        let port = server.port
        let idle = try TestClient(port: port)
        let busy = try TestClient(port: port)
        try busy.send("GET /slow HTTP/1.1\r\n\r\n")
        XCTAssertTrue(eventually { received.value })

        let stopped = Box(false)
        Thread.detachNewThread {
            server.shutdown(gracePeriod: 2)
            stopped.value = true
        }
        XCTAssertTrue(idle.waitForClose(), "idle connection is closed at once")
        XCTAssertThrowsError(try TestClient(port: port), "listener is closed")
        let response = try busy.readResponse()
        XCTAssertEqual(response.text, "slow")
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertTrue(eventually { stopped.value })
        server.shutdown(gracePeriod: 1) // idempotent
    }

    func testShutdownDeadlineCutsStreamThatNeverEnds() throws {
        let closed = Box(false)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { closed.value = true }
            writer.startStream(status: 200, headers: [:])
            writer.write(Array("forever".utf8))
        })
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\n\r\n")
        _ = try client.readHead()
        XCTAssertNotNil(try client.readChunk())
        let start = Date()
        server.shutdown(gracePeriod: 0.3)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertGreaterThanOrEqual(elapsed, 0.25)
        XCTAssertLessThan(elapsed, 1.5)
        XCTAssertTrue(closed.value)
        XCTAssertTrue(client.waitForClose())
        XCTAssertEqual(server.openConnectionCount, 0)
        XCTAssertEqual(server.inFlightCount, 0)
    }

    func testStartFailsWithSocketErrorNamingBindWhenPortIsTaken() throws {
        let first = try startTestServer()
        defer { first.shutdown(gracePeriod: 0) }
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: first.port)
        configuration.eventLoopCount = 1
        let second = HTTPServer(configuration: configuration, responder: echoResponder)
        XCTAssertThrowsError(try second.start()) { error in
            let socketError = error as? SocketError
            XCTAssertEqual(socketError?.call, "bind")
            XCTAssertEqual(socketError?.errno, EADDRINUSE)
        }
    }
}
