/// The content of a chat message: one string, or a list of text parts (OpenAI's content array).
public enum ChatContent: Sendable, Equatable {
    /// One string.
    case text(String)
    /// Text parts, shown to templates as `[{"type": "text", "text": ...}, ...]`.
    case parts([String])

    var templateValue: ChatTemplateValue {
        switch self {
        case let .text(text):
            return .string(text)
        case let .parts(parts):
            return .array(parts.map { ["type": "text", "text": .string($0)] })
        }
    }
}
