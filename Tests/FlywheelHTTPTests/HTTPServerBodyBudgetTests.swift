import FlywheelHTTP
import XCTest

/// The server-wide budget for request bodies being received (`maxBufferedBodyBytes`).
final class HTTPServerBodyBudgetTests: XCTestCase {
    private static let budget = 1 << 20
    private static let largeBody = 600_000

    /// Answers with the body size.
    private static let sizeResponder = ClosureResponder { request, writer in
        writer.send(HTTPResponse(status: 200, body: Array("\(request.path) \(request.body.count)".utf8)))
    }

    private func startBudgetServer() throws -> HTTPServer {
        try startTestServer(responder: Self.sizeResponder) { configuration in
            configuration.maxBodyBytes = Self.budget
            configuration.maxBufferedBodyBytes = Self.budget
            configuration.errorRenderer = { status, _ in
                HTTPResponse(status: status, headers: ["Content-Type": "application/json"],
                             body: Array("{\"error\":{\"code\":\(status)}}".utf8))
            }
        }
    }

    private func head(_ path: String, contentLength: Int, expectContinue: Bool = false) -> String {
        "POST \(path) HTTP/1.1\r\nContent-Length: \(contentLength)\r\n"
            + (expectContinue ? "Expect: 100-continue\r\n" : "") + "\r\n"
    }

    private func bytes(_ count: Int) -> [UInt8] {
        [UInt8](repeating: UInt8(ascii: "x"), count: count)
    }

    func testSecondLargeBodyGets503WhileFirstIsIncompleteAndPassesAfterwards() throws {
        let server = try startBudgetServer()
        defer { server.shutdown(gracePeriod: 1) }

        // "100 Continue" is only sent once the body's bytes are reserved.
        let first = try TestClient(port: server.port)
        try first.send(head("/first", contentLength: Self.largeBody, expectContinue: true))
        XCTAssertEqual(try first.readHead().status, 100)
        try first.send(bytes(1000))
        XCTAssertEqual(server.bufferedBodyByteCount, Self.largeBody)

        let second = try TestClient(port: server.port)
        try second.send(Array(head("/second", contentLength: Self.largeBody).utf8) + bytes(1000))
        let refused = try second.readResponse()
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.header("Retry-After"), "1")
        XCTAssertEqual(refused.text, "{\"error\":{\"code\":503}}", "rendered by the configured error renderer")
        XCTAssertEqual(refused.header("Connection"), "close")
        XCTAssertTrue(second.waitForClose())

        // Requests without a body are not affected by a full budget.
        let small = try TestClient(port: server.port)
        try small.send("GET /small HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try small.readResponse().text, "/small 0")

        try first.send(bytes(Self.largeBody - 1000))
        XCTAssertEqual(try first.readResponse().text, "/first \(Self.largeBody)")
        // Released when the request was handed to the responder, before its response was written.
        XCTAssertEqual(server.bufferedBodyByteCount, 0)

        let third = try TestClient(port: server.port)
        try third.send(Array(head("/third", contentLength: Self.largeBody).utf8) + bytes(Self.largeBody))
        XCTAssertEqual(try third.readResponse().text, "/third \(Self.largeBody)")
    }

    func testChunkedBodiesReserveChunkByChunk() throws {
        let server = try startBudgetServer()
        defer { server.shutdown(gracePeriod: 1) }
        let chunked = "Transfer-Encoding: chunked\r\n\r\n"
        let size = String(Self.largeBody, radix: 16)

        let first = try TestClient(port: server.port)
        try first.send(Array("POST /first HTTP/1.1\r\n\(chunked)\(size)\r\n".utf8) + bytes(1000))
        XCTAssertTrue(eventually { server.bufferedBodyByteCount == Self.largeBody })

        let second = try TestClient(port: server.port)
        try second.send("POST /second HTTP/1.1\r\n\(chunked)10\r\n0123456789abcdef\r\n\(size)\r\n")
        let refused = try second.readResponse()
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.header("Retry-After"), "1")

        try first.send(bytes(Self.largeBody - 1000) + Array("\r\n0\r\n\r\n".utf8))
        XCTAssertEqual(try first.readResponse().text, "/first \(Self.largeBody)")
        XCTAssertEqual(server.bufferedBodyByteCount, 0)
    }

    func testClientLeavingMidBodyReleasesItsReservation() throws {
        let server = try startBudgetServer()
        defer { server.shutdown(gracePeriod: 1) }
        do {
            let client = try TestClient(port: server.port)
            try client.send(head("/gone", contentLength: Self.largeBody, expectContinue: true))
            XCTAssertEqual(try client.readHead().status, 100)
            XCTAssertEqual(server.bufferedBodyByteCount, Self.largeBody)
        }
        XCTAssertTrue(eventually { server.bufferedBodyByteCount == 0 })
        let next = try TestClient(port: server.port)
        try next.send(Array(head("/next", contentLength: Self.largeBody).utf8) + bytes(Self.largeBody))
        XCTAssertEqual(try next.readResponse().text, "/next \(Self.largeBody)")
    }

    func testRefusedBodyOverTheLimitReleasesNothingItDidNotTake() throws {
        let server = try startBudgetServer()
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send(head("/huge", contentLength: Self.budget + 1))
        XCTAssertEqual(try client.readResponse().status, 413)
        XCTAssertEqual(server.bufferedBodyByteCount, 0)
    }
}
