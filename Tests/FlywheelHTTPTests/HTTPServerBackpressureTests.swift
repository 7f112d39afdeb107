import Dispatch
import FlywheelHTTP
import XCTest

final class HTTPServerBackpressureTests: XCTestCase {
    func testClientThatStopsReadingIsDroppedAtPendingOutputLimit() throws {
        let closed = Box(false)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { _ in closed.value = true }
            writer.startStream(status: 200, headers: [:])
            DispatchQueue.global().async {
                let chunk = [UInt8](repeating: 120, count: 64 * 1024)
                var sent = 0
                while !writer.isClosed && sent < 512 << 20 {
                    writer.write(chunk)
                    sent += chunk.count
                    if sent % (4 << 20) == 0 { usleep(1_000) }
                }
            }
        }) { $0.maxPendingOutputBytes = 1 << 20 }
        defer { server.shutdown(gracePeriod: 0) }
        let client = try TestClient(port: server.port)
        try client.send("GET /firehose HTTP/1.1\r\n\r\n")
        // Never read.
        XCTAssertTrue(eventually(timeout: 3) { closed.value })
        XCTAssertTrue(eventually { server.inFlightCount == 0 })
    }

    func testClientThatReadsNothingIsDroppedAfterWriteTimeout() throws {
        let closed = Box(false)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { _ in closed.value = true }
            writer.startStream(status: 200, headers: [:])
            writer.write([UInt8](repeating: 120, count: 32 << 20))
        }) {
            $0.writeTimeout = 0.3
        }
        defer { server.shutdown(gracePeriod: 0) }
        let client = try TestClient(port: server.port)
        try client.send("GET /big HTTP/1.1\r\n\r\n")
        let start = Date()
        XCTAssertTrue(eventually(timeout: 2) { closed.value })
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.25)
    }

    func testLargeRequestBodyArrivesWhole() throws {
        let server = try startTestServer(responder: ClosureResponder { request, writer in
            writer.send(HTTPResponse(status: 200, body: Array(String(request.body.count).utf8)))
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        let body = [UInt8](repeating: 66, count: 3 << 20)
        let fd = client.fd
        let sender = Thread {
            try? TestClient.send(Array("POST /upload HTTP/1.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body, to: fd)
        }
        sender.start()
        XCTAssertEqual(try client.readResponse().text, String(3 << 20))
    }

    func testWriterCallsAfterShutdownAreHarmless() throws {
        let writerBox = Box<HTTPResponseWriter?>(nil)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writerBox.value = writer
        })
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\n\r\n")
        XCTAssertTrue(eventually { writerBox.value != nil })
        server.shutdown(gracePeriod: 0.05)
        let writer = try XCTUnwrap(writerBox.value)
        XCTAssertTrue(writer.isClosed)
        let ran = Box(false)
        writer.onClose { _ in ran.value = true }
        XCTAssertTrue(ran.value)
        writer.send(HTTPResponse(status: 200))
        writer.endStream()
        XCTAssertTrue(client.waitForClose())
    }
}
