import FlywheelChatTemplate

/// Chat templates (lexer, parser, interpreter) over fuzzed template text and fuzzed messages, under small
/// limits. Input: one configuration byte, the template, then NUL-separated message fields (role, content,
/// role, content, ...). Invariants:
/// - parsing and rendering fail only with a `ChatTemplateError` (typed throws), never a trap or a hang
///   (libFuzzer's `-timeout` catches a render that outruns the limits);
/// - the output never exceeds `maxOutputBytes`;
/// - rendering is a pure function: the same inputs render the same text (or the same error) twice;
/// - parsing the same source twice gives templates that render alike.
enum ChatTemplateHarness {
    static let limits = ChatTemplateLimits(
        maxOutputBytes: 64 << 10, maxLoopIterations: 20_000, maxCallDepth: 16, maxRangeLength: 2_000,
        maxInspectedNodes: 200_000)

    static func run(_ data: [UInt8]) {
        var config = FuzzBytes(data)
        let byte = config.byte()
        let fields = config.rest.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard let source = fields.first else { return }

        let template: ChatTemplate
        do {
            template = try ChatTemplate(source: source, limits: limits)
        } catch {
            check((try? ChatTemplate(source: source, limits: limits)) == nil, "parses the second time")
            check(!error.description.isEmpty, "an error without a message")
            return
        }

        let messages = makeMessages(Array(fields.dropFirst()), byte: byte)
        let tools: [ChatTemplateValue]? = byte & 0x02 == 0 ? nil : [
            ["type": "function", "function": ["name": "get_weather", "description": "Weather in a city",
                                               "parameters": ["type": "object", "properties": ["city": ["type": "string"]]]]],
        ]
        let extra: [String: ChatTemplateValue] = byte & 0x10 == 0 ? [:] : ["enable_thinking": .bool(byte & 0x20 != 0)]
        func render(_ template: ChatTemplate) -> Result<String, ChatTemplateError> {
            Result { () throws(ChatTemplateError) -> String in
                try template.render(
                    messages: messages, addGenerationPrompt: byte & 0x01 != 0, bosToken: "<s>", eosToken: "</s>",
                    tools: tools, extra: extra, secondsSince1970: 1_725_537_600)
            }
        }
        let first = render(template)
        if case .success(let text) = first {
            check(text.utf8.count <= limits.maxOutputBytes, "rendered \(text.utf8.count) bytes")
        }
        check(render(template) == first, "rendering again differs")
    }

    /// Role and content pairs; the configuration byte turns contents into parts or adds a tool call.
    static func makeMessages(_ fields: [String], byte: UInt8) -> [ChatMessage] {
        var messages: [ChatMessage] = []
        var index = 0
        while index < fields.count && messages.count < 32 {
            let role = fields[index]
            let content = index + 1 < fields.count ? fields[index + 1] : ""
            index += 2
            var message = ChatMessage(role: role, content: byte & 0x04 != 0 ? .parts([content, "."]) : .text(content))
            if role == "assistant", byte & 0x08 != 0 {
                message.toolCalls = [ChatToolCall(id: "call_1", functionName: "get_weather", arguments: content)]
                message.content = nil
            }
            if role == "tool" { message.toolCallID = "call_1" }
            messages.append(message)
        }
        return messages
    }
}
