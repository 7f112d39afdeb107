import XCTest
import FlywheelRedaction

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

final class PIIScrubberScaleTests: XCTestCase {
    /// Long runs of word characters (a hex dump, a minified line) are scanned once, not once per position: these
    /// inputs took minutes when the e-mail rule could start anywhere in a run. (No timing is asserted: a
    /// regression shows as a test that takes minutes.)
    func testLongWordRunsAreScrubbedInOnePass() {
        var s = PIIScrubber()
        let run = String(repeating: "a", count: 100_000)
        XCTAssertEqual(s.scrub(run), run)
        XCTAssertEqual(s.scrub(run + "@"), run + "@")
        XCTAssertEqual(s.scrub(run + "@" + String(repeating: "b", count: 100_000)), run + "@" + String(repeating: "b", count: 100_000))
        XCTAssertEqual(s.scrub("x " + run + "@example.com y"), "x <EMAIL> y")
        XCTAssertEqual(s.scrub(String(repeating: "1", count: 100_000)).count, 100_000)
        XCTAssertEqual(s.scrub("mail jane.doe@mail.example.co.uk now"), "mail <EMAIL> now")
    }
}
