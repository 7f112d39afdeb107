import XCTest
@testable import FlywheelChatTemplate

final class ChatToolCallTests: XCTestCase {
    func testObjectArgumentsReachTemplatesParsed() {
        let call = ChatToolCall(id: "c1", functionName: "f", arguments: #"{"b": 1, "a": "x"}"#)
        let arguments = call.templateValue["function"]?["arguments"]
        XCTAssertEqual(arguments, ["b": 1, "a": "x"])
        guard case let .object(object)? = arguments else { return XCTFail() }
        XCTAssertEqual(object.keys, ["b", "a"])
    }

    func testArgumentsThatAreNotAJSONObjectStayStrings() {
        XCTAssertEqual(ChatToolCall(id: "c", functionName: "f", arguments: "not json").templateValue["function"]?["arguments"],
                       "not json")
        XCTAssertEqual(ChatToolCall(id: "c", functionName: "f", arguments: "[1]").templateValue["function"]?["arguments"],
                       "[1]")
    }

    func testToolCallShapeMatchesOpenAIWire() {
        let value = ChatToolCall(id: "c1", functionName: "f", arguments: "{}").templateValue
        guard case let .object(object) = value else { return XCTFail() }
        XCTAssertEqual(object.keys, ["id", "type", "function"])
        XCTAssertEqual(object["type"], "function")
    }
}
