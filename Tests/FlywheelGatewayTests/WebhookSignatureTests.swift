import Foundation
import XCTest
@testable import FlywheelGateway

final class WebhookSignatureTests: XCTestCase {
    let now: Int64 = 1_790_000_000

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
        XCTAssertEqual(s.verify(header: good, body: body, nowSeconds: now), .valid)
        XCTAssertEqual(s.verify(header: good.uppercased().replacingOccurrences(of: "SHA256=", with: "sha256="), body: body, nowSeconds: now), .valid)
        XCTAssertEqual(s.verify(header: good, body: body + [0x20], nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: nil, body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: "sha256=zz", body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: String(good.dropLast()), body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: WebhookSignature(secret: "other").sign(body), body: body, nowSeconds: now), .invalid)
    }

    func testTimestampedSignatureIsValidOnlyInsideTheWindow() {
        let s = WebhookSignature(secret: "s3cret", tolerance: 300)
        let body = Array(#"{"request_id":"x","signal":"accepted"}"#.utf8)
        let header = s.sign(body, timestamp: now)
        XCTAssertTrue(header.hasPrefix("t=\(now),v1="))
        XCTAssertEqual(s.verify(header: header, body: body, nowSeconds: now + 299), .valid)
        XCTAssertEqual(s.verify(header: header, body: body, nowSeconds: now - 299), .valid)
        // A replay after the window is refused as stale, not merely invalid.
        XCTAssertEqual(s.verify(header: header, body: body, nowSeconds: now + 301), .stale)
        // The timestamp is signed: moving it forward breaks the MAC.
        let moved = header.replacingOccurrences(of: "t=\(now)", with: "t=\(now + 1000)")
        XCTAssertEqual(s.verify(header: moved, body: body, nowSeconds: now + 1000), .invalid)
        XCTAssertEqual(s.verify(header: header, body: body + [0x20], nowSeconds: now), .invalid)
    }

    func testTimestampedFormAcceptsAnyOfSeveralMACsAndRejectsMalformedOnes() {
        let s = WebhookSignature(secret: "s3cret")
        let body = Array("{}".utf8)
        let good = s.sign(body, timestamp: now)
        let mac = String(good.split(separator: "=").last!)
        let wrong = String(repeating: "0", count: 64)
        XCTAssertEqual(s.verify(header: "t=\(now),v1=\(wrong),v1=\(mac)", body: body, nowSeconds: now), .valid)
        XCTAssertEqual(s.verify(header: "t=\(now), v1=\(mac)", body: body, nowSeconds: now), .valid)
        XCTAssertEqual(s.verify(header: "v1=\(mac)", body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: "t=abc,v1=\(mac)", body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: "t=\(now),t=\(now),v1=\(mac)", body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: "t=\(now),v1=\(mac)\r\nx", body: body, nowSeconds: now), .invalid)
        XCTAssertEqual(s.verify(header: String(repeating: "t=1,", count: 1000), body: body, nowSeconds: now), .invalid)
    }
}
