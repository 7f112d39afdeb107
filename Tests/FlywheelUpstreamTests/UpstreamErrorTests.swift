import CCurl
import Glibc
import XCTest
@testable import FlywheelUpstream

final class UpstreamErrorTests: XCTestCase {
    func testPublicSummaryNamesNoEndpointOrAddress() {
        let detail = "Failed to connect to 10.1.2.3 port 8000 after 0 ms: Couldn't connect to server (curl error 7)"
        let cases: [(UpstreamError, String)] = [
            (.connectFailed(endpoint: "vllm-a", reason: .init(cause: .connectionRefused, message: detail)),
             "connection refused"),
            (.connectFailed(endpoint: "vllm-a", reason: .init(cause: .hostNotFound, message: detail)),
             "upstream host not found"),
            (.transferFailed(endpoint: "vllm-a", reason: .init(cause: .connectionReset, message: detail)),
             "connection reset"),
            (.timedOut(endpoint: "vllm-a", phase: "connect", seconds: 10), "timed out while connecting"),
            (.timedOut(endpoint: "vllm-a", phase: "first byte", seconds: 120), "timed out waiting for the response"),
            (.timedOut(endpoint: "vllm-a", phase: "total", seconds: 600), "timed out"),
            (.invalidRequest("endpoint vllm-a: base URL must start with http:// or https://"),
             "the upstream request could not be built"),
            (.cancelled, "cancelled"),
            (.shutdown, "shutting down"),
        ]
        for (error, summary) in cases {
            XCTAssertEqual(error.publicSummary, summary)
            XCTAssertFalse(error.publicSummary.contains("vllm-a"))
            XCTAssertFalse(error.publicSummary.contains("10.1.2.3"))
        }
        // The log keeps the detail.
        XCTAssertTrue(cases[0].0.description.contains("10.1.2.3 port 8000"))
        XCTAssertTrue(cases[0].0.description.contains("vllm-a"))
    }

    func testCauseFromCurlCodeAndErrno() {
        typealias Cause = UpstreamFailureReason.Cause
        XCTAssertEqual(Cause(curlCode: CURLE_COULDNT_CONNECT, osErrno: ECONNREFUSED), .connectionRefused)
        XCTAssertEqual(Cause(curlCode: CURLE_COULDNT_CONNECT, osErrno: EHOSTUNREACH), .hostUnreachable)
        XCTAssertEqual(Cause(curlCode: CURLE_COULDNT_CONNECT, osErrno: 0), .couldNotConnect)
        XCTAssertEqual(Cause(curlCode: CURLE_COULDNT_RESOLVE_HOST, osErrno: 0), .hostNotFound)
        XCTAssertEqual(Cause(curlCode: CURLE_PEER_FAILED_VERIFICATION, osErrno: 0), .tlsCertificateRejected)
        XCTAssertEqual(Cause(curlCode: CURLE_SSL_CONNECT_ERROR, osErrno: 0), .tlsHandshakeFailed)
        XCTAssertEqual(Cause(curlCode: CURLE_RECV_ERROR, osErrno: ECONNRESET), .connectionReset)
        XCTAssertEqual(Cause(curlCode: CURLE_SEND_ERROR, osErrno: EPIPE), .connectionReset)
        XCTAssertEqual(Cause(curlCode: CURLE_GOT_NOTHING, osErrno: 0), .emptyReply)
        XCTAssertEqual(Cause(curlCode: CURLE_PARTIAL_FILE, osErrno: 0), .responseIncomplete)
        XCTAssertEqual(Cause(curlCode: CURLE_WEIRD_SERVER_REPLY, osErrno: 0), .malformedResponse)
        XCTAssertTrue(Cause.isConnectFailure(CURLE_COULDNT_CONNECT))
        XCTAssertFalse(Cause.isConnectFailure(CURLE_RECV_ERROR))
    }
}
