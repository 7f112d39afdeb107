import FlywheelChatTemplate
import FlywheelJSON
import XCTest
@testable import FlywheelGateway

final class LocalChatMessagesTests: XCTestCase {
    private func convert(_ json: String) throws -> [ChatMessage] {
        guard case .array(let messages) = try JSONParser.parse(Array(json.utf8)) else { XCTFail("not an array"); return [] }
        return try LocalModelEntry.chatMessages(messages)
    }

    func testOpenAIMessagesBecomeTemplateMessages() throws {
        let messages = try convert("""
        [{"role":"system","content":"be brief"},
         {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"name":"ann"},
         {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",
           "function":{"name":"lookup","arguments":"{\\"q\\":1}"}}]},
         {"role":"tool","content":"42","tool_call_id":"call_1"}]
        """)
        XCTAssertEqual(messages, [
            ChatMessage(role: "system", text: "be brief"),
            ChatMessage(role: "user", content: .parts(["a", "b"]), name: "ann"),
            ChatMessage(role: "assistant", content: .text(""),
                        toolCalls: [ChatToolCall(id: "call_1", functionName: "lookup", arguments: #"{"q":1}"#)]),
            ChatMessage(role: "tool", content: .text("42"), toolCallID: "call_1"),
        ])
    }

    func testImagePartsAndMissingRolesAreRefusedNamingTheMessage() {
        XCTAssertThrowsError(try convert(#"[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[0].content[0]")
        }
        XCTAssertThrowsError(try convert(#"[{"role":"user","content":"x"},{"content":"y"}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[1]")
        }
        XCTAssertThrowsError(try convert(#"[{"role":"assistant","tool_calls":[{"id":"c","function":{}}]}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[0].tool_calls[0]")
        }
        XCTAssertThrowsError(try convert(#"[{"role":"user","content":7}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[0].content")
        }
    }
}
