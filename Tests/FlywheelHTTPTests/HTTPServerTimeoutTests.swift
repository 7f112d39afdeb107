import FlywheelHTTP
import XCTest

final class HTTPServerTimeoutTests: XCTestCase {
    func testSlowClientIsDroppedAfterRequestTimeout() throws {
        let server = try startTestServer { $0.requestTimeout = 0.5 }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        let start = Date()
        // One byte every 100 ms: each byte is progress, but the request never completes in time.
        var status: Int?
        for byte in "GET /slow HTTP/1.1\r\nX-Drip: 1234567890\r\n".utf8 {
            do { try client.send([byte]) } catch { break }
            usleep(100_000)
            if Date().timeIntervalSince(start) > 0.6 { break }
        }
        status = try client.readResponse().status
        XCTAssertEqual(status, 408)
        XCTAssertTrue(client.waitForClose())
        XCTAssertLessThan(Date().timeIntervalSince(start), 2.0)
    }

    func testIdleKeepAliveConnectionIsClosedSilently() throws {
        let server = try startTestServer { $0.idleTimeout = 0.3 }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TestClient(port: server.port)
        try client.send("GET / HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponse().status, 200)
        let start = Date()
        XCTAssertTrue(client.waitForClose())
        XCTAssertGreaterThan(Date().timeIntervalSince(start), 0.2)
        XCTAssertTrue(eventually { server.openConnectionCount == 0 })
    }
}
