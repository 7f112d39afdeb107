/// One message of a conversation, as a chat template receives it.
public struct ChatMessage: Sendable, Equatable {
    /// "system", "user", "assistant", "tool", ...
    public var role: String
    /// Text, or text parts; nil for an assistant message that only calls tools.
    public var content: ChatContent?
    /// An optional participant or tool name.
    public var name: String?
    /// Function calls an assistant message made.
    public var toolCalls: [ChatToolCall]?
    /// For role "tool": the id of the call this message answers.
    public var toolCallID: String?

    /// A message with any of the fields set.
    public init(
        role: String, content: ChatContent? = nil, name: String? = nil,
        toolCalls: [ChatToolCall]? = nil, toolCallID: String? = nil
    ) {
        self.role = role
        self.content = content
        self.name = name
        self.toolCalls = toolCalls
        self.toolCallID = toolCallID
    }

    /// A text message.
    public init(role: String, text: String) {
        self.init(role: role, content: .text(text))
    }

    /// The mapping a template sees: keys `role`, `content`, `name`, `tool_calls`, `tool_call_id`
    /// in that order, each present only when set (so `message.tool_calls is defined` means what
    /// templates expect).
    var templateValue: ChatTemplateValue {
        var object = ChatTemplateObject()
        object["role"] = .string(role)
        if let content { object["content"] = content.templateValue }
        if let name { object["name"] = .string(name) }
        if let toolCalls { object["tool_calls"] = .array(toolCalls.map(\.templateValue)) }
        if let toolCallID { object["tool_call_id"] = .string(toolCallID) }
        return .object(object)
    }
}
