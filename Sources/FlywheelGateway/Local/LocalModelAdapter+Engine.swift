import FlywheelChatTemplate
import FlywheelEngine
import FlywheelJSON

extension LocalModelAdapter {
    /// One entry per model `inference` serves, in its order: what the gateway's `localModels` takes.
    public static func entries(for inference: LocalInference) -> [LocalModelAdapter] {
        inference.models.map(LocalModelAdapter.init)
    }

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

    /// OpenAI chat messages to the template's message type. Text content (a string, or text parts
    /// joined into one string), `name`, assistant `tool_calls` and tool `tool_call_id` are kept;
    /// other content parts (images, audio, files) are refused by name, since the local models read
    /// text only.
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
                content = .text(try joinedText(parts, param: "\(param).content"))
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

    /// The text of OpenAI content parts (`[{"type": "text", "text": ...}, ...]`) as one string: the
    /// parts in order, separated by a newline, as llama.cpp's server joins them for templates that
    /// expect a string (most chat templates concatenate `message['content']` and fail on a list).
    /// Any other part type is a 400 naming the part and its index (`messages[i].content[j]`).
    static func joinedText(_ parts: [JSON], param: String) throws(OpenAIError) -> String {
        var text = ""
        for (j, part) in parts.enumerated() {
            let partParam = "\(param)[\(j)]"
            guard let type = part["type"]?.stringValue else {
                throw .invalidRequest("\(partParam) must be a content part object with a 'type'.", param: partParam)
            }
            guard type == "text" else {
                throw .invalidRequest("\(partParam) is a '\(type)' part; local models accept text parts only.", param: partParam, code: OpenAIError.localModelLimit)
            }
            guard let piece = part["text"]?.stringValue else {
                throw .invalidRequest("\(partParam) is a text part without a string 'text'.", param: partParam)
            }
            // Like llama.cpp: no separator until there is text to separate.
            if !text.isEmpty { text += "\n" }
            text += piece
        }
        return text
    }
}
