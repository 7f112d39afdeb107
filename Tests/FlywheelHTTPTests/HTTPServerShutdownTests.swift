#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import FlywheelHTTP
import FlywheelSockets
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
        let closed = Box<HTTPCloseReason?>(nil)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { closed.value = $0 }
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
        XCTAssertEqual(closed.value, .serverShutdown)
        XCTAssertTrue(client.waitForClose())
        XCTAssertEqual(server.openConnectionCount, 0)
        XCTAssertEqual(server.inFlightCount, 0)
    }

    /// A streaming responder that, told the server is shutting down, sends an SSE error event and ends the stream.
    private static let sseResponder = ClosureResponder { _, writer in
        writer.onClose { reason in
            guard reason == .serverShutdown else { return }
            writer.write(Array("event: error\ndata: {\"error\":\"server shutting down\"}\n\n".utf8))
            writer.endStream()
        }
        writer.startStream(status: 200, headers: ["Content-Type": "text/event-stream"])
        writer.write(Array("data: first\n\n".utf8))
    }

    func testStreamCutByShutdownEndsWithFinalEventAndChunkedTerminator() throws {
        let server = try startTestServer(responder: Self.sseResponder)
        let client = try TestClient(port: server.port)
        try client.send("GET /events HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readHead().header("Transfer-Encoding"), "chunked")
        XCTAssertEqual(try client.readChunk(), Array("data: first\n\n".utf8))

        // No grace: the stream never ends on its own. shutdown returns once the final bytes were flushed, and they
        // wait in the client's socket buffer.
        server.shutdown(gracePeriod: 0)
        XCTAssertEqual(try client.readChunk().map { String(decoding: $0, as: UTF8.self) },
                       "event: error\ndata: {\"error\":\"server shutting down\"}\n\n")
        XCTAssertNil(try client.readChunk(), "the chunked terminator follows")
        XCTAssertTrue(client.waitForClose())
        XCTAssertEqual(server.openConnectionCount, 0)
        XCTAssertEqual(server.inFlightCount, 0)
    }

    func testShutdownEndsEveryRunningStreamAcrossLoops() throws {
        let server = try startTestServer(responder: Self.sseResponder) { $0.eventLoopCount = 2 }
        let clients = try (0..<4).map { _ in try TestClient(port: server.port) }
        for client in clients {
            try client.send("GET /events HTTP/1.1\r\n\r\n")
            _ = try client.readHead()
            XCTAssertEqual(try client.readChunk(), Array("data: first\n\n".utf8))
        }
        server.shutdown(gracePeriod: 0)
        for client in clients {
            XCTAssertNotNil(try client.readChunk())
            XCTAssertNil(try client.readChunk())
            XCTAssertTrue(client.waitForClose())
        }
    }

    func testResponderIgnoringShutdownIsToldWhyAndItsStreamIsCut() throws {
        let reasons = Box<[HTTPCloseReason]>([])
        let writerBox = Box<HTTPResponseWriter?>(nil)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { reason in reasons.update { $0.append(reason) } }
            writer.startStream(status: 200, headers: [:])
            writer.write(Array("first".utf8))
            writerBox.value = writer
        })
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\n\r\n")
        _ = try client.readHead()
        XCTAssertEqual(try client.readChunk(), Array("first".utf8))

        server.shutdown(gracePeriod: 0)
        XCTAssertEqual(reasons.value, [.serverShutdown])
        // No terminator: the client can tell the stream was cut.
        XCTAssertThrowsError(try client.readChunk())
        let writer = try XCTUnwrap(writerBox.value)
        XCTAssertTrue(writer.isClosed)
        let late = Box<HTTPCloseReason?>(nil)
        writer.onClose { late.value = $0 } // already cut: runs at once, with the same reason
        XCTAssertEqual(late.value, .serverShutdown)
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
