import XCTest
@testable import FlywheelTokenizer

final class TokenTextTableTests: XCTestCase {
    func testLooksUpTextsAndByteRanges() {
        let texts = (0 ..< 1000).map { "tok\($0)" } + ["", "é", "▁the"]
        let table = TokenTextTable(texts)
        for (id, text) in texts.enumerated() {
            XCTAssertEqual(table.id(of: text), Int32(id), text)
        }
        let query = Array("xx▁theyy".utf8)
        XCTAssertEqual(table.id(of: query, 2 ..< 8), 1002)  // "▁" is three bytes
        XCTAssertNil(table.id(of: query, 2 ..< 7))
        XCTAssertNil(table.id(of: "tok1000"))
    }

    func testDuplicateTextResolvesToTheLowerId() {
        XCTAssertEqual(TokenTextTable(["a", "b", "a"]).id(of: "a"), 0)
    }
}
