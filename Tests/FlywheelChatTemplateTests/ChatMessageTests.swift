import XCTest
@testable import FlywheelChatTemplate

final class ChatMessageTests: XCTestCase {
    func testOnlySetFieldsAppearInOrder() {
        let message = ChatMessage(role: "tool", content: .text("21"), name: "get_weather", toolCallID: "c1")
        guard case let .object(object) = message.templateValue else { return XCTFail() }
        XCTAssertEqual(object.keys, ["role", "content", "name", "tool_call_id"])
    }

    func testTextPartsBecomeTypedParts() {
        let message = ChatMessage(role: "user", content: .parts(["a", "b"]))
        XCTAssertEqual(message.templateValue["content"], [["type": "text", "text": "a"], ["type": "text", "text": "b"]])
    }

    func testAssistantWithoutContentHasNoContentKey() {
        let message = ChatMessage(role: "assistant", toolCalls: [ChatToolCall(id: "c", functionName: "f", arguments: "{}")])
        XCTAssertNil(message.templateValue["content"])
        XCTAssertNotNil(message.templateValue["tool_calls"])
    }
}
