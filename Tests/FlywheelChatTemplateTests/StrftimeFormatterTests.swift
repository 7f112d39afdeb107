import XCTest
@testable import FlywheelChatTemplate

final class StrftimeFormatterTests: XCTestCase {
    func testLlamaDateFormat() {
        XCTAssertEqual(StrftimeFormatter.format("%d %b %Y", secondsSince1970: 1_721_952_000), "26 Jul 2024")
    }

    func testAllSupportedDirectives() {
        // 2024-02-29 13:05:09 UTC, a Thursday, day 60 of a leap year.
        let output = StrftimeFormatter.format("%a %A %b %B %d %e %m %y %Y %H %I %M %S %p %j %F %T %% %Q", secondsSince1970: 1_709_211_909)
        XCTAssertEqual(output, "Thu Thursday Feb February 29 29 02 24 2024 13 01 05 09 PM 060 2024-02-29 13:05:09 % %Q")
    }

    func testEpochAndDatesBefore1970() {
        XCTAssertEqual(StrftimeFormatter.format("%Y-%m-%d %A", secondsSince1970: 0), "1970-01-01 Thursday")
        XCTAssertEqual(StrftimeFormatter.format("%Y-%m-%d %H:%M %A", secondsSince1970: -1), "1969-12-31 23:59 Wednesday")
    }
}
