import XCTest
@testable import FlywheelTokenizer

final class SpecialTokenMatcherTests: XCTestCase {
    private let matcher = SpecialTokenMatcher(
        tokens: ["x", "<|a|>", "<|a|>b", "<t>", "<unk>"], types: [.normal, .control, .control, .userDefined, .unknown])

    func testLongestControlTokenWinsWhenParsingSpecial() {
        let text = Array("1<|a|>b2<|a|><t>".utf8)
        XCTAssertEqual(matcher.fragments(of: text, parseSpecial: true),
                       [.text(0 ..< 1), .token(2), .text(7 ..< 8), .token(1), .token(3)])
    }

    func testOnlyUserDefinedTokensMatchWithoutParseSpecial() {
        let text = Array("<|a|><t><unk>".utf8)
        XCTAssertEqual(matcher.fragments(of: text, parseSpecial: false), [.text(0 ..< 5), .token(3), .text(8 ..< 13)])
        XCTAssertEqual(matcher.fragments(of: text, parseSpecial: true), [.token(1), .token(3), .token(4)])
    }

    func testEmptyTextHasNoFragments() {
        XCTAssertEqual(matcher.fragments(of: [], parseSpecial: true), [])
    }
}
