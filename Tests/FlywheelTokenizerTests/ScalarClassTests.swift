import XCTest
@testable import FlywheelTokenizer

final class ScalarClassTests: XCTestCase {
    func testClassifiesLettersNumbersAndWhitespaceAcrossScripts() {
        for letter in ["a", "Z", "é", "ж", "中", "ア", "한", "ʰ"] {
            XCTAssertEqual(ScalarClass(letter.unicodeScalars.first!), .letter, letter)
        }
        for number in ["0", "٣", "Ⅻ", "½", "²"] {
            XCTAssertEqual(ScalarClass(number.unicodeScalars.first!), .number, number)
        }
        XCTAssertEqual(ScalarClass(" "), .space)
        XCTAssertEqual(ScalarClass("\n"), .newline)
        XCTAssertEqual(ScalarClass("\r"), .newline)
        for space in ["\t", "\u{00A0}", "\u{3000}", "\u{2028}", "\u{0085}"] {
            XCTAssertEqual(ScalarClass(space.unicodeScalars.first!), .otherWhitespace, space.debugDescription)
        }
        for other in ["'", "!", "😀", "\u{0301}", "\u{200D}", "€"] {
            XCTAssertEqual(ScalarClass(other.unicodeScalars.first!), .other, other.debugDescription)
        }
    }
}
