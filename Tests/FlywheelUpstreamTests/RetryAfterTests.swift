import XCTest
@testable import FlywheelUpstream

final class RetryAfterTests: XCTestCase {
    /// 1994-11-06 08:49:37 UTC, the RFC's example date.
    let example: Int64 = 784_111_777

    func testDelaySeconds() {
        XCTAssertEqual(RetryAfter.seconds("120", now: 0), 120)
        XCTAssertEqual(RetryAfter.seconds("0", now: 0), 0)
        XCTAssertEqual(RetryAfter.seconds(" 7 ", now: 0), 7, "optional whitespace around a field value")
        XCTAssertEqual(RetryAfter.seconds(String(repeating: "9", count: 40), now: 0), 1e9, "huge is just very long")
    }

    func testTheThreeDateFormsOfRFC9110() {
        for form in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            XCTAssertEqual(RetryAfter.httpDate(Array(form.utf8)), example, form)
            XCTAssertEqual(RetryAfter.seconds(form, now: example - 30), 30, form)
        }
        XCTAssertEqual(RetryAfter.seconds("Sun Nov 16 08:49:37 1994", now: example), 10 * 86_400)
    }

    func testADateInThePastMeansNow() {
        XCTAssertEqual(RetryAfter.seconds("Sun, 06 Nov 1994 08:49:37 GMT", now: example + 3600), 0)
    }

    func testLeapDaysAndMonthLengths() {
        XCTAssertEqual(RetryAfter.httpDate(Array("Thu, 29 Feb 2024 00:00:00 GMT".utf8)), 1_709_164_800)
        XCTAssertNil(RetryAfter.httpDate(Array("Thu, 29 Feb 2023 00:00:00 GMT".utf8)))
        XCTAssertNil(RetryAfter.httpDate(Array("Thu, 31 Apr 2024 00:00:00 GMT".utf8)))
        XCTAssertEqual(RetryAfter.httpDate(Array("Thu, 01 Jan 1970 00:00:00 GMT".utf8)), 0)
        XCTAssertEqual(RetryAfter.daysFromCivil(year: 2000, month: 3, day: 1), 11_017)
    }

    func testTwoDigitYearsFollowTheFiftyYearRule() {
        XCTAssertEqual(RetryAfter.fullYear(94, currentYear: 2026), 1994)
        XCTAssertEqual(RetryAfter.fullYear(30, currentYear: 2026), 2030)
        XCTAssertEqual(RetryAfter.fullYear(76, currentYear: 2026), 2076)
        XCTAssertEqual(RetryAfter.fullYear(77, currentYear: 2026), 1977)
    }

    func testInvalidValuesAreRefused() {
        for value in ["", " ", "-1", "+5", "1.5", "1e3", "inf", "nan", "0x10", "soon",
                      "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 06 Nov 1994 08:49:37 +0000", "Sun, 6 Nov 1994 08:49:37 GMT",
                      "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
                      "Sun, 06 Nov 1994 08:49:37 GMT x", "Sunday, 06 Nov 1994 08:49:37 GMT", "Sun, 06-Nov-94 08:49:37 GMT",
                      "Xyz, 06 Nov 1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 1994 GMT",
                      "Sun, 06 Nov 1969 08:49:37 GMT", "12\r\nX-Injected: 1", String(repeating: "1 ", count: 40)] {
            XCTAssertNil(RetryAfter.seconds(value, now: example), value.debugDescription)
        }
    }
}
