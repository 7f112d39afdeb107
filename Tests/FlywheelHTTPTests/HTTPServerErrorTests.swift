import FlywheelHTTP
import XCTest

final class HTTPServerErrorTests: XCTestCase {
    private func startRenderingServer(_ configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws -> HTTPServer {
        try startTestServer { configuration in
            configuration.errorRenderer = { status, message in
                HTTPResponse(status: status, headers: ["Content-Type": "application/json"],
                             body: Array("{\"error\":{\"code\":\(status)}}".utf8))
            }
            configure(&configuration)
        }
    }

    private func assertError(_ request: String, status: Int, server: HTTPServer,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        let client = try TestClient(port: server.port)
        try client.send(request)
        let response = try client.readResponse()
        XCTAssertEqual(response.status, status, file: file, line: line)
        XCTAssertEqual(response.text, "{\"error\":{\"code\":\(status)}}", file: file, line: line)
        XCTAssertEqual(response.header("Content-Type"), "application/json", file: file, line: line)
        XCTAssertEqual(response.header("Connection"), "close", file: file, line: line)
        XCTAssertTrue(client.waitForClose(), "connection should close after \(status)", file: file, line: line)
    }

    func testTooLargeBodyGets413FromErrorRenderer() throws {
        let server = try startRenderingServer { $0.maxBodyBytes = 100 }
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", status: 413, server: server)
    }

    func testTooLargeChunkedBodyGets413() throws {
        let server = try startRenderingServer { $0.maxBodyBytes = 8 }
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n",
                        status: 413, server: server)
    }

    func testOversizedHeaderSectionGets431() throws {
        let server = try startRenderingServer { $0.maxHeaderBytes = 512 }
        defer { server.shutdown(gracePeriod: 1) }
        let big = String(repeating: "a", count: 600)
        try assertError("GET / HTTP/1.1\r\nX-Big: \(big)\r\n\r\n", status: 431, server: server)
    }

    func testMalformedRequestLineGets400() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("GARBAGE\r\n\r\n", status: 400, server: server)
    }

    func testHeaderWithoutColonGets400() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("GET / HTTP/1.1\r\nNoColonHere\r\n\r\n", status: 400, server: server)
    }

    func testContentLengthWithTransferEncodingGets400() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                        status: 400, server: server)
    }

    func testBareLineFeedGets400() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("GET / HTTP/1.1\nHost: h\n\n", status: 400, server: server)
    }

    func testUnknownTransferCodingGets501() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", status: 501, server: server)
    }

    func testSmuggledRequestAfterEmptyTransferEncodingIsNeverAnswered() throws {
        // A front end that ignores the empty Transfer-Encoding and one that honours Content-Length disagree on
        // where the body ends; we refuse the message and close, so the tail is never parsed as a request.
        let seen = Box<[String]>([])
        let server = try startTestServer(responder: ClosureResponder { request, writer in
            seen.update { $0.append(request.path) }
            writer.send(HTTPResponse(status: 200))
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("POST /front HTTP/1.1\r\nTransfer-Encoding:\r\nContent-Length: 32\r\n\r\n"
                        + "GET /smuggled HTTP/1.1\r\n\r\n....")
        XCTAssertEqual(try client.readResponse().status, 400)
        XCTAssertTrue(client.waitForClose())
        XCTAssertEqual(seen.value, [])
    }

    func testChunkDataEndingInBareLineFeedGets400() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n",
                        status: 400, server: server)
    }

    func testUnsupportedVersionGets505() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        try assertError("GET / HTTP/2.0\r\n\r\n", status: 505, server: server)
    }

    func testConnectionsOverTheLimitGet503AndClose() throws {
        let server = try startRenderingServer { $0.maxConnections = 2 }
        defer { server.shutdown(gracePeriod: 1) }
        let first = try TestClient(port: server.port)
        let second = try TestClient(port: server.port)
        try first.send("GET / HTTP/1.1\r\n\r\n")
        try second.send("GET / HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try first.readResponse().status, 200)
        XCTAssertEqual(try second.readResponse().status, 200)
        try assertError("GET / HTTP/1.1\r\n\r\n", status: 503, server: server)
        // The two admitted connections keep working.
        try first.send("GET /again HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try first.readResponse().status, 200)
    }

    func testErrorsLeakNoConnections() throws {
        let server = try startRenderingServer()
        defer { server.shutdown(gracePeriod: 1) }
        for _ in 0..<20 {
            let client = try TestClient(port: server.port)
            try client.send("BAD\r\n\r\n")
            XCTAssertEqual(try client.readResponse().status, 400)
        }
        XCTAssertTrue(eventually { server.openConnectionCount == 0 }, "open: \(server.openConnectionCount)")
    }
}
