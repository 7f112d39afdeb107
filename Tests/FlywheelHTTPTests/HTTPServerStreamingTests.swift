import Dispatch
import FlywheelHTTP
import XCTest

final class HTTPServerStreamingTests: XCTestCase {
    func testStreamArrivesChunkByChunk() throws {
        let writers = Box<[HTTPResponseWriter]>([])
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.startStream(status: 200, headers: ["Content-Type": "text/event-stream"])
            writer.write(ServerSentEvents.encode(data: "first"))
            writers.update { $0.append(writer) }
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /stream HTTP/1.1\r\n\r\n")
        let head = try client.readHead()
        XCTAssertEqual(head.header("Transfer-Encoding"), "chunked")
        XCTAssertNil(head.header("Content-Length"))
        // The first chunk is here before the responder has written the second.
        XCTAssertEqual(try client.readChunk().map { String(decoding: $0, as: UTF8.self) }, "data: first\n\n")
        XCTAssertTrue(eventually { writers.value.count == 1 })
        let writer = writers.value[0]
        writer.write(ServerSentEvents.encode(data: "second"))
        XCTAssertEqual(try client.readChunk().map { String(decoding: $0, as: UTF8.self) }, "data: second\n\n")
        writer.endStream()
        XCTAssertNil(try client.readChunk())
        XCTAssertTrue(eventually { writer.isClosed && server.inFlightCount == 0 })
        // The connection is reusable after the stream.
        try client.send("GET /stream HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readHead().status, 200)
    }

    func testAbortClosesTheConnectionWithTheStreamUnfinished() throws {
        let closeReasons = Box<[HTTPCloseReason]>([])
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.startStream(status: 200, headers: ["Content-Type": "text/event-stream"])
            writer.onClose { reason in closeReasons.update { $0.append(reason) } }
            writer.write(ServerSentEvents.encode(data: "partial"))
            writer.abort()
            writer.write(ServerSentEvents.encode(data: "never"))
            writer.endStream()
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /stream HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readHead().status, 200)
        XCTAssertEqual(try client.readChunk().map { String(decoding: $0, as: UTF8.self) }, "data: partial\n\n")
        XCTAssertTrue(client.waitForClose(), "no last chunk: the connection just ends")
        XCTAssertTrue(eventually { server.inFlightCount == 0 && server.openConnectionCount == 0 })
        XCTAssertEqual(closeReasons.value, [], "the responder chose this end: no onClose")
    }

    func testWriterWorksFromAnotherThread() throws {
        let server = try startTestServer(responder: ClosureResponder { request, writer in
            DispatchQueue.global().async {
                writer.startStream(status: 201, headers: [:])
                for index in 0..<50 { writer.write(Array("part\(index);".utf8)) }
                writer.endStream()
            }
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        for _ in 0..<3 {
            try client.send("GET /t HTTP/1.1\r\n\r\n")
            let response = try client.readResponse()
            XCTAssertEqual(response.status, 201)
            XCTAssertEqual(response.text, (0..<50).map { "part\($0);" }.joined())
        }
    }

    func testSendFromAnotherThreadAfterDelay() throws {
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) {
                writer.send(HTTPResponse(status: 200, body: Array("later".utf8)))
            }
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "later")
        XCTAssertTrue(eventually { server.inFlightCount == 0 })
    }

    func testOnCloseFiresWhenClientDisconnectsMidStream() throws {
        let closed = Box(0)
        let reasons = Box<[HTTPCloseReason]>([])
        let writerBox = Box<HTTPResponseWriter?>(nil)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.onClose { reason in
                reasons.update { $0.append(reason) }
                closed.update { $0 += 1 }
            }
            writer.startStream(status: 200, headers: [:])
            writer.write(Array("hello".utf8))
            writerBox.value = writer
        })
        defer { server.shutdown(gracePeriod: 1) }
        do {
            let client = try TestClient(port: server.port)
            try client.send("GET / HTTP/1.1\r\n\r\n")
            _ = try client.readHead()
            XCTAssertEqual(try client.readChunk(), Array("hello".utf8))
            XCTAssertEqual(server.inFlightCount, 1)
        } // client closes here
        XCTAssertTrue(eventually { closed.value == 1 })
        let writer = try XCTUnwrap(writerBox.value)
        XCTAssertTrue(writer.isClosed)
        writer.write(Array("ignored".utf8)) // no-op
        writer.endStream()
        XCTAssertTrue(eventually { server.inFlightCount == 0 && server.openConnectionCount == 0 })
        let late = Box<HTTPCloseReason?>(nil)
        writer.onClose { late.value = $0 } // already gone: runs at once
        XCTAssertEqual(late.value, .clientDisconnected)
        XCTAssertEqual(closed.value, 1)
        XCTAssertEqual(reasons.value, [.clientDisconnected])
    }

    func testHTTP10StreamIsCloseDelimited() throws {
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.startStream(status: 200, headers: [:])
            writer.write(Array("abc".utf8))
            writer.write(Array("def".utf8))
            writer.endStream()
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.0\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertNil(response.header("Transfer-Encoding"))
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertEqual(response.text, "abcdef")
    }
}
