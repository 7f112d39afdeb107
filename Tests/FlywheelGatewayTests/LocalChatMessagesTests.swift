import FlywheelChatTemplate
import FlywheelJSON
import XCTest
@testable import FlywheelGateway

final class LocalChatMessagesTests: XCTestCase {
    private func convert(_ json: String) throws -> [ChatMessage] {
        guard case .array(let messages) = try JSONParser.parse(Array(json.utf8)) else { XCTFail("not an array"); return [] }
        return try LocalModelAdapter.chatMessages(messages)
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
            ChatMessage(role: "user", content: .text("a\nb"), name: "ann"),
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

    func testTextPartsAreJoinedInOrderWithNewlines() throws {
        XCTAssertEqual(try convert(#"[{"role":"user","content":[{"type":"text","text":"hello"}]}]"#),
                       [ChatMessage(role: "user", text: "hello")])
        XCTAssertEqual(try convert(#"[{"role":"user","content":[{"type":"text","text":""},{"type":"text","text":"a"},{"type":"text","text":"b"}]}]"#),
                       [ChatMessage(role: "user", text: "a\nb")], "no separator before the first text")
        XCTAssertEqual(try convert(#"[{"role":"user","content":[]}]"#), [ChatMessage(role: "user", text: "")])
    }

    func testPartsRenderThroughATemplateThatConcatenatesContent() throws {
        // Most chat templates do `'...' + message['content'] + '...'`, which fails on a list of parts.
        let template = try ChatTemplate(source: "{% for m in messages %}<{{ m['role'] + '>' + m['content'] }}\n{% endfor %}")
        let messages = try convert(#"[{"role":"system","content":[{"type":"text","text":"be brief"}]},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"text","text":"there"}]}]"#)
        let text = try template.render(messages: messages, addGenerationPrompt: true, bosToken: "", eosToken: "")
        XCTAssertEqual(text, "<system>be brief\n<user>hi\nthere\n")
    }

    func testNonTextPartsAreRefusedNamingTheTypeAndIndex() {
        for (type, json) in [("image_url", #"{"type":"image_url","image_url":{"url":"x"}}"#),
                             ("input_audio", #"{"type":"input_audio","input_audio":{"data":"","format":"wav"}}"#),
                             ("file", #"{"type":"file","file":{"file_id":"f"}}"#)] {
            XCTAssertThrowsError(try convert(#"[{"role":"user","content":"x"},{"role":"user","content":[{"type":"text","text":"look"},"# + json + "]}]")) {
                let error = $0 as? OpenAIError
                XCTAssertEqual(error?.param, "messages[1].content[1]")
                XCTAssertEqual(error?.status, 400)
                XCTAssertTrue(error?.message.contains("'\(type)'") == true, "\(String(describing: error?.message))")
            }
        }
        XCTAssertThrowsError(try convert(#"[{"role":"user","content":[{"text":"no type"}]}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[0].content[0]")
        }
        XCTAssertThrowsError(try convert(#"[{"role":"user","content":[{"type":"text","text":3}]}]"#)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "messages[0].content[0]")
        }
    }
}
