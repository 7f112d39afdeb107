import XCTest
import FlywheelJSON
import FlywheelStore
@testable import FlywheelInspect

final class TerminalTextTests: XCTestCase {
    /// What a hostile client might log: clear screen, carriage return, bell, a one-character CSI (U+009B,
    /// valid UTF-8), DEL and a right-to-left override.
    static let hostile = "a\u{1B}[2Jb\rc\u{07}d\u{9B}31me\u{7F}f\u{202E}g"

    /// No raw control (C0 but line feed and tab, DEL, C1, bidi) may reach the terminal.
    static func assertInert(_ text: String, allowNewlines: Bool, file: StaticString = #filePath, line: UInt = #line) {
        for scalar in text.unicodeScalars where TerminalText.needsEscape(scalar, multiline: allowNewlines) {
            XCTFail("raw U+\(String(scalar.value, radix: 16)) in \(text.debugDescription)", file: file, line: line)
        }
    }

    func testControlsAreSpelledOut() {
        XCTAssertEqual(TerminalText.visible(Self.hostile), #"a\e[2Jb\rc\ad\u{9b}31me\x7ff\u{202e}g"#)
        XCTAssertEqual(TerminalText.visible("\u{0}\u{1}\u{8}\u{B}\u{C}\u{1F}\u{80}\u{9F}"), #"\0\x01\b\v\f\x1f\u{80}\u{9f}"#)
        XCTAssertEqual(TerminalText.visible("\u{61C}\u{200E}\u{200F}\u{202A}\u{2066}\u{2069}\u{2028}\u{2029}"),
                       #"\u{61c}\u{200e}\u{200f}\u{202a}\u{2066}\u{2069}\u{2028}\u{2029}"#)
    }

    func testOrdinaryTextIsUntouched() {
        let text = "héllo ✓ 日本語 emoji 👍🏽 \\e is not an escape"
        XCTAssertEqual(TerminalText.visible(text), text)
        XCTAssertEqual(TerminalText.jsonSafe(#"{"a":"\#(text)"}"#), #"{"a":"\#(text)"}"#)
    }

    func testNewlinesAndTabsAreKeptOnlyInMultilineText() {
        XCTAssertEqual(TerminalText.visible("a\nb\tc\rd"), #"a\nb\tc\rd"#)
        XCTAssertEqual(TerminalText.visible("a\nb\tc\rd", multiline: true), "a\nb\tc\\rd")
    }

    func testJSONStaysValidAndDecodesToTheSameText() throws {
        let json: JSON = ["text": .string(Self.hostile)]
        let text = json.serializedString()
        let safe = TerminalText.jsonSafe(text)
        Self.assertInert(safe, allowNewlines: false)
        XCTAssertTrue(safe.contains(#"\u009b"#), safe)
        XCTAssertTrue(safe.contains(#"\u202e"#), safe)
        XCTAssertEqual(try JSONParser.parse(safe)["text"], .string(Self.hostile))
    }
}
