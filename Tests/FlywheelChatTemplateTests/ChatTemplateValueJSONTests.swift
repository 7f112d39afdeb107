import FlywheelJSON
import XCTest
@testable import FlywheelChatTemplate

final class ChatTemplateValueJSONTests: XCTestCase {
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

    func testNestingBeyondTheTemplateDepthIsRefusedWithAnOffset() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        XCTAssertThrowsError(try ChatTemplateValue(json: deep)) {
            guard case .runtime(let message, _)? = $0 as? ChatTemplateError else { return XCTFail("\($0)") }
            XCTAssertTrue(message.hasPrefix("invalid JSON at byte 128"), message)
        }
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        XCTAssertNoThrow(try ChatTemplateValue(json: fine))
    }

    func testRepeatedKeysKeepTheFirstPositionAndTheLastValue() throws {
        let value = try ChatTemplateValue(json: #"{"a": 1, "b": 2, "a": 3}"#)
        XCTAssertEqual(value, .object(ChatTemplateObject([("a", 3), ("b", 2)])))
        guard case let .object(object) = value else { return XCTFail() }
        XCTAssertEqual(object.keys, ["a", "b"])
    }

    func testParsedJSONValuesKeepTypesAndKeyOrder() throws {
        let json = try JSONParser.parse(#"{"type":"function","function":{"name":"f","strict":true,"n":2,"x":1.5,"d":null,"e":[]}}"#)
        let value = ChatTemplateValue(json)
        XCTAssertEqual(value, .object(ChatTemplateObject([
            ("type", "function"),
            ("function", .object(ChatTemplateObject([
                ("name", "f"), ("strict", true), ("n", 2), ("x", 1.5), ("d", .none), ("e", []),
            ]))),
        ])))
        guard case let .object(outer) = value, case let .object(function)? = outer["function"] else { return XCTFail() }
        XCTAssertEqual(function.keys, ["name", "strict", "n", "x", "d", "e"])
    }
}
