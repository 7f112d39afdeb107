import FlywheelHTTP
import XCTest

final class HTTPServerKeepAliveTests: XCTestCase {
    func testTwoRequestsShareOneKeepAliveConnection() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
        let first = try client.readResponse()
        XCTAssertEqual(first.status, 200)
        XCTAssertEqual(first.text, "GET /first ")
        XCTAssertNotNil(first.header("Date"))
        XCTAssertNil(first.header("Connection"))
        try client.send("POST /second HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        let second = try client.readResponse()
        XCTAssertEqual(second.text, "POST /second hello")
        XCTAssertEqual(server.openConnectionCount, 1)
    }

    func testChunkedRequestBodyIsDechunked() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "POST /c hello world")
    }

    func testPipelinedRequestsAreAnsweredInOrder() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "GET /a ")
        XCTAssertEqual(try client.readResponse().text, "POST /b hi")
        XCTAssertEqual(try client.readResponse().text, "GET /c ")
    }

    func testHTTP10ClosesUnlessKeepAliveRequested() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let plain = try TestClient(port: server.port)
        try plain.send("GET /old HTTP/1.0\r\n\r\n")
        let response = try plain.readResponse()
        XCTAssertEqual(response.header("Connection"), "close")
        XCTAssertTrue(plain.waitForClose())

        let keepAlive = try TestClient(port: server.port)
        try keepAlive.send("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(try keepAlive.readResponse().header("Connection"), "keep-alive")
        try keepAlive.send("GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        XCTAssertEqual(try keepAlive.readResponse().text, "GET /b ")
    }

    func testConnectionCloseIsHonoured() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /bye HTTP/1.1\r\nConnection: close\r\n\r\n")
        XCTAssertEqual(try client.readResponse().header("Connection"), "close")
        XCTAssertTrue(client.waitForClose())
    }

    func testExpectContinueGetsInterimResponseBeforeBody() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("PUT /up HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try client.readHead().status, 100)
        try client.send("data")
        XCTAssertEqual(try client.readResponse().text, "PUT /up data")
    }

    func testExpectContinueWithTooLargeBodyGets413() throws {
        let server = try startTestServer { $0.maxBodyBytes = 10 }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("PUT /up HTTP/1.1\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 413)
    }

    func testRequestCarriesRemoteAddressQueryAndArrivalTime() throws {
        let seen = Box<HTTPRequest?>(nil)
        let server = try startTestServer(responder: ClosureResponder { request, writer in
            seen.value = request
            writer.send(HTTPResponse(status: 204))
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /v1/models?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.status, 204)
        let request = try XCTUnwrap(seen.value)
        XCTAssertEqual(request.path, "/v1/models")
        XCTAssertEqual(request.query, "x=1")
        XCTAssertEqual(request.target, "/v1/models?x=1")
        XCTAssertTrue(request.remoteAddress.hasPrefix("127.0.0.1:"))
        XCTAssertGreaterThan(request.receivedAtNanos, 0)
        XCTAssertEqual(request.headers["host"], "h")
    }

    func testLargeResponseBodyIsDeliveredWhole() throws {
        let big = [UInt8](repeating: 65, count: 3 << 20)
        let server = try startTestServer(responder: ClosureResponder { _, writer in
            writer.send(HTTPResponse(status: 200, body: big))
        })
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /big HTTP/1.1\r\n\r\n")
        let response = try client.readResponse()
        XCTAssertEqual(response.body.count, big.count)
        try client.send("GET /big HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().body.count, big.count)
    }

    func testHeadResponseHasLengthButNoBody() throws {
        let server = try startTestServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("HEAD /h HTTP/1.1\r\n\r\n")
        let head = try client.readResponse(isHead: true)
        XCTAssertEqual(head.header("Content-Length"), "8")
        try client.send("GET /x HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().text, "GET /x ")
    }
}
