import FlywheelHTTP
import XCTest

/// `HTTPServer.updateLimits` (a configuration reload) and the access observer.
final class HTTPServerLiveLimitsTests: XCTestCase {
    func testLoweredBodyLimitHoldsForNewConnectionsWhileAnOpenOneKeepsItsOwn() throws {
        let server = try startTestServer { $0.maxBodyBytes = 1000 }
        defer { server.shutdown(gracePeriod: 1) }
        let before = try TestClient(port: server.port)
        try before.send("POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        XCTAssertEqual(try before.readResponse().status, 200)

        var limits = server.limits
        limits.maxBodyBytes = 10
        server.updateLimits(limits)
        XCTAssertEqual(server.limits.maxBodyBytes, 10)

        let after = try TestClient(port: server.port)
        try after.send("POST /b HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + String(repeating: "x", count: 20))
        XCTAssertEqual(try after.readResponse().status, 413)
        // The keep-alive connection from before the change is not dropped and keeps its parser.
        try before.send("POST /c HTTP/1.1\r\nContent-Length: 20\r\n\r\n" + String(repeating: "y", count: 20))
        let kept = try before.readResponse()
        XCTAssertEqual(kept.status, 200)
        XCTAssertEqual(kept.text, "POST /c " + String(repeating: "y", count: 20))
    }

    func testLoweredRequestTimeoutAppliesToConnectionsAlreadyOpen() throws {
        let server = try startTestServer { $0.requestTimeout = 60 }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\nHost: x\r\n")  // never finished
        var limits = server.limits
        limits.requestTimeout = 0.2
        server.updateLimits(limits)
        XCTAssertEqual(try client.readResponse().status, 408)
    }

    func testAccessObserverSeesEachRequestOnceWithoutTheQuery() throws {
        let records = Box<[HTTPAccessRecord]>([])
        let responder = ClosureResponder { request, writer in
            writer.noteForAccessLog("model", "m")
            writer.send(HTTPResponse(status: 201, headers: ["x-request-id": "rid-1"], body: Array("hello".utf8)))
        }
        let server = try startTestServer(responder: responder) { configuration in
            configuration.accessObserver = { record in records.update { $0.append(record) } }
        }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET /path?key=secret HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 201)
        let broken = try TestClient(port: server.port)
        try broken.send("NOT HTTP\r\n\r\n")
        XCTAssertEqual(try broken.readResponse().status, 400)
        XCTAssertTrue(eventually { records.value.count == 2 })
        let ok = records.value.first { $0.status == 201 }
        XCTAssertEqual(ok?.method, "GET")
        XCTAssertEqual(ok?.path, "/path")
        XCTAssertEqual(ok?.bodyBytes, 5)
        XCTAssertEqual(ok?.requestID, "rid-1")
        XCTAssertEqual(ok?.notes.map { "\($0.0)=\($0.1)" }, ["model=m"])
        XCTAssertEqual(ok?.ending, .completed)
        let bad = records.value.first { $0.status == 400 }
        XCTAssertEqual(bad?.method, "-")
        XCTAssertEqual(bad?.path, "-")
    }
}
