import XCTest
@testable import FlywheelLoop

final class PIIScrubberTests: XCTestCase {
    func testEachKindIsReplacedByItsPlaceholderAndCounted() {
        var s = PIIScrubber()
        let text = "Mail jane.doe@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, "
            + "from 192.168.1.20 with Authorization: Bearer abcdefghijklmnop0123 and key sk-proj-ABCDEFGHIJKLMNOPQRST"
        let out = s.scrub(text)
        for needle in ["jane.doe", "7946", "4111", "GB82", "192.168", "abcdefghijklmnop", "sk-proj"] {
            XCTAssertFalse(out.contains(needle), "\(needle) left in: \(out)")
        }
        for placeholder in ["<EMAIL>", "<PHONE>", "<CARD>", "<IBAN>", "<IP>", "<SECRET>"] {
            XCTAssertTrue(out.contains(placeholder), "\(placeholder) missing: \(out)")
        }
        XCTAssertEqual(s.counts["EMAIL"], 1)
        XCTAssertEqual(s.counts["CARD"], 1)
    }

    func testNumbersThatAreNotCardsStay() {
        var s = PIIScrubber()
        // 16 digits failing the Luhn check (an order number), a version and a price.
        let text = "order 1234 5678 9012 3456, version 1.2.3, total 45.00"
        XCTAssertFalse(s.scrub(text).contains("<CARD>"))
        XCTAssertTrue(PIIScrubber.passesLuhn("4111111111111111"))
        XCTAssertFalse(PIIScrubber.passesLuhn("4111111111111112"))
        XCTAssertEqual(s.scrub(""), "")
    }
}
