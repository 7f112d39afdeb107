import XCTest
@testable import FlywheelGateway

final class WebhookSignatureTests: XCTestCase {
    func testMatchesKnownHMACVector() {
        // RFC 4231 test case 2.
        let s = WebhookSignature(secret: "Jefe")
        XCTAssertEqual(s.sign(Array("what do ya want for nothing?".utf8)),
                       "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    func testVerifyAcceptsOnlyTheExactSignature() {
        let s = WebhookSignature(secret: "s3cret")
        let body = Array(#"{"request_id":"x","signal":"accepted"}"#.utf8)
        let good = s.sign(body)
        XCTAssertTrue(s.verify(header: good, body: body))
        XCTAssertTrue(s.verify(header: good.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), body: body))
        XCTAssertFalse(s.verify(header: good, body: body + [0x20]))
        XCTAssertFalse(s.verify(header: nil, body: body))
        XCTAssertFalse(s.verify(header: "sha256=zz", body: body))
        XCTAssertFalse(s.verify(header: String(good.dropLast()), body: body))
        XCTAssertFalse(s.verify(header: WebhookSignature(secret: "other").sign(body), body: body))
    }
}
