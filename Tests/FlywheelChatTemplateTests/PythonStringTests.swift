import XCTest
@testable import FlywheelChatTemplate

final class PythonStringTests: XCTestCase {
    func testStripUsesPythonWhitespaceOrGivenCharacters() {
        XCTAssertEqual(PythonString.strip(" \t\u{1F}a b\u{A0}\n", characters: nil, leading: true, trailing: true), "a b")
        XCTAssertEqual(PythonString.strip("xxaxyx", characters: "xy", leading: true, trailing: false), "axyx")
    }

    func testSplitWithAndWithoutSeparator() {
        XCTAssertEqual(PythonString.split("  a  b c ", separator: nil, maxSplit: -1), ["a", "b", "c"])
        XCTAssertEqual(PythonString.split("  a  b c ", separator: nil, maxSplit: 1), ["a", "b c"])
        XCTAssertEqual(PythonString.split("a,,b", separator: ",", maxSplit: -1), ["a", "", "b"])
        XCTAssertEqual(PythonString.split("<t>x</t>y", separator: "</t>", maxSplit: -1), ["<t>x", "y"])
    }

    func testReplaceCountAndEmptyNeedle() {
        XCTAssertEqual(PythonString.replace("aaa", "a", "b", count: 2), "bba")
        XCTAssertEqual(PythonString.replace("ab", "", "-", count: -1), "-a-b-")
    }

    func testTitleFlavours() {
        XCTAssertEqual(PythonString.title("they're bill's-x"), "They'Re Bill'S-X")
        XCTAssertEqual(PythonString.jinjaTitle("they're bill's-x (y)"), "They're Bill's-X (Y)")
        XCTAssertEqual(PythonString.capitalize("hELLO"), "Hello")
    }
}
