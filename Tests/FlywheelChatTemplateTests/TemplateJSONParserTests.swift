import XCTest
@testable import FlywheelChatTemplate

final class TemplateJSONParserTests: XCTestCase {
    func testJSONParsingKeepsKeyOrderAndNumberKinds() throws {
        let value = try ChatTemplateValue(json: #"{"b": 1, "a": [1.0, -2, 3e2, "\u00e9\ud83d\ude80", null, false]}"#)
        guard case let .object(object) = value else { return XCTFail() }
        XCTAssertEqual(object.keys, ["b", "a"])
        XCTAssertEqual(object["a"], [.double(1), .int(-2), .double(300), "é🚀", nil, false])
    }

    func testInvalidJSONThrows() {
        XCTAssertThrowsError(try ChatTemplateValue(json: "{\"a\": }"))
        XCTAssertThrowsError(try ChatTemplateValue(json: "[1, 2"))
        XCTAssertThrowsError(try ChatTemplateValue(json: "not json"))
        XCTAssertThrowsError(try ChatTemplateValue(json: String(repeating: "[", count: 10_000)))
    }

    func testTrailingCharactersAndBadEscapesAreRejected() {
        XCTAssertThrowsError(try ChatTemplateValue(json: "{} x"))
        XCTAssertThrowsError(try ChatTemplateValue(json: #""\x""#))
        XCTAssertThrowsError(try ChatTemplateValue(json: "\"a\nb\""))
    }
}
