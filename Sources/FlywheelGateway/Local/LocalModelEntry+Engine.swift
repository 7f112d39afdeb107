import FlywheelChatTemplate
import FlywheelEngine
import FlywheelJSON

extension LocalModelEntry {
    /// Serves `local` under its name: OpenAI messages become `ChatMessage`s for the model's chat template.
    public convenience init(_ local: LocalModel) {
        self.init(
            name: local.name, model: local, vocabularySize: local.tokenizer.vocabularySize,
            chatPrompt: { messages, tools throws(OpenAIError) in
                let chat = try Self.chatMessages(messages)
                var templateTools: [ChatTemplateValue]?
                if let tools {
                    guard case .array(let items) = tools else {
                        throw .invalidRequest("'tools' must be an array of tool definitions.", param: "tools")
                    }
                    templateTools = items.map(ChatTemplateValue.init)
                }
                do {
                    return try local.chatPromptTokens(chat, tools: templateTools)
                } catch {
                    throw .invalidRequest("\(error)", param: "messages", code: "chat_template_error")
                }
            },
            textPrompt: { local.textPromptTokens($0) })
    }

    /// OpenAI chat messages to the template's message type. Text content (a string or text parts),
    /// `name`, assistant `tool_calls` and tool `tool_call_id` are kept; other content parts
    /// (images, audio) are refused by name, since the local models read text only.
    static func chatMessages(_ messages: [JSON]) throws(OpenAIError) -> [ChatMessage] {
        var result: [ChatMessage] = []
        result.reserveCapacity(messages.count)
        for (i, m) in messages.enumerated() {
            let param = "messages[\(i)]"
            guard let role = m["role"]?.stringValue else {
                throw .invalidRequest("\(param) must be an object with a 'role'.", param: param)
            }
            var content: ChatContent?
            switch m["content"] {
            // Assistant turns that only call tools come with content null; several templates (Qwen3,
            // DeepSeek-R1) fail on a missing content, so they get an empty string, as serving stacks do.
            case nil, .null?: content = role == "assistant" ? .text("") : nil
            case .string(let s)?: content = .text(s)
            case .array(let parts)?:
                var texts: [String] = []
                for (j, part) in parts.enumerated() {
                    let type = part["type"]?.stringValue ?? "?"
                    guard type == "text", let text = part["text"]?.stringValue else {
                        throw .invalidRequest("\(param).content[\(j)] is a '\(type)' part; local models accept text parts only.",
                                              param: "\(param).content[\(j)]")
                    }
                    texts.append(text)
                }
                content = .parts(texts)
            default:
                throw .invalidRequest("\(param).content must be a string, an array of text parts, or null.", param: "\(param).content")
            }
            var calls: [ChatToolCall]?
            if let list = m["tool_calls"]?.arrayValue {
                calls = []
                for (j, call) in list.enumerated() {
                    guard let function = call["function"], let fname = function["name"]?.stringValue else {
                        throw .invalidRequest("\(param).tool_calls[\(j)] needs function.name.", param: "\(param).tool_calls[\(j)]")
                    }
                    let arguments = function["arguments"]?.stringValue ?? function["arguments"]?.serializedString() ?? "{}"
                    calls?.append(ChatToolCall(id: call["id"]?.stringValue ?? "call_\(j)", type: call["type"]?.stringValue ?? "function",
                                               functionName: fname, arguments: arguments))
                }
            }
            result.append(ChatMessage(role: role, content: content, name: m["name"]?.stringValue, toolCalls: calls,
                                      toolCallID: m["tool_call_id"]?.stringValue))
        }
        return result
    }
}
