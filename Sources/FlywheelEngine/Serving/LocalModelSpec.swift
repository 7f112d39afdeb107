/// One model for `LocalInference` to load: the name requests use and its GGUF file, with optional
/// overrides of the context length and the chat template.
public struct LocalModelSpec: Sendable, Equatable {
    /// The `model` name requests use.
    public var name: String
    /// The GGUF file.
    public var path: String
    /// Tokens per sequence; nil takes the model's, at most `LocalModel.defaultContextCap`.
    public var contextLength: Int?
    /// Jinja source replacing the file's `tokenizer.chat_template`.
    public var chatTemplate: String?

    public init(name: String, path: String, contextLength: Int? = nil, chatTemplate: String? = nil) {
        self.name = name
        self.path = path
        self.contextLength = contextLength
        self.chatTemplate = chatTemplate
    }
}
