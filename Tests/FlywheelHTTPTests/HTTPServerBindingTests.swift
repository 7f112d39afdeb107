import FlywheelHTTP
import XCTest

final class HTTPServerBindingTests: XCTestCase {
    func testServerListensOnLocalhostAndIPv6Wildcard() throws {
        for host in ["localhost", "::", "0.0.0.0"] {
            var configuration = HTTPServerConfiguration(host: host, port: 0)
            configuration.eventLoopCount = 1
            let server = HTTPServer(configuration: configuration, responder: echoResponder)
            try server.start()
            defer { server.shutdown(gracePeriod: 0) }
            XCTAssertNotEqual(server.port, 0)
            if host != "localhost" {
                // "::" is dual-stack, so IPv4 loopback reaches it too.
                let client = try TestClient(port: server.port)
                try client.send("GET /\(host) HTTP/1.1\r\n\r\n")
                XCTAssertEqual(try client.readResponse().status, 200, host)
            }
        }
    }
}
