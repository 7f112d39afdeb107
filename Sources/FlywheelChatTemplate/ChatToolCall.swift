/// A function call an assistant message made (OpenAI's `tool_calls[i]`).
public struct ChatToolCall: Sendable, Equatable {
    /// The call id the matching "tool" message answers with `toolCallID`.
    public var id: String
    /// Always "function" today.
    public var type: String
    /// The function the model asked to call.
    public var functionName: String
    /// The arguments as the wire carries them: a JSON string.
    public var arguments: String

    /// A call of `functionName` with `arguments` as JSON text.
    public init(id: String, type: String = "function", functionName: String, arguments: String) {
        self.id = id
        self.type = type
        self.functionName = functionName
        self.arguments = arguments
    }

    /// `{"id", "type", "function": {"name", "arguments"}}`. Templates (Qwen2.5, Llama 3.1, Mistral)
    /// apply `tojson` to `arguments` and expect a mapping, as Hugging Face's examples pass it, so
    /// arguments that parse as a JSON object are handed over parsed; anything else stays a string.
    var templateValue: ChatTemplateValue {
        var arguments = ChatTemplateValue.string(self.arguments)
        if let parsed = try? ChatTemplateValue(json: self.arguments), case .object = parsed {
            arguments = parsed
        }
        return [
            "id": .string(id),
            "type": .string(type),
            "function": ["name": .string(functionName), "arguments": arguments],
        ]
    }
}
