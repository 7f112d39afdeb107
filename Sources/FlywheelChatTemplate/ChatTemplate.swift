import Foundation

/// A model's chat template (the Jinja source from `tokenizer.chat_template`), parsed once and
/// rendered per request with Hugging Face's settings: `trim_blocks`, `lstrip_blocks`, loop
/// controls, the `raise_exception` and `strftime_now` globals, and `tojson` as `json.dumps`.
///
/// Rendering is a pure function of its inputs; one `ChatTemplate` can be shared across threads.
public struct ChatTemplate: Sendable {
    /// The template text as given.
    public let source: String
    public let limits: ChatTemplateLimits
    private let body: [TemplateStatement]

    /// Parses `source`; throws `.syntax` (with line and column) or `.unsupported` for tags this
    /// renderer does not know.
    public init(source: String, limits: ChatTemplateLimits = ChatTemplateLimits()) throws(ChatTemplateError) {
        self.source = source
        self.limits = limits
        var lexer = TemplateLexer(source: source)
        var parser = TemplateParser(tokens: try lexer.tokenize())
        body = try parser.parseTemplate()
    }

    /// Renders a conversation the way `tokenizer.apply_chat_template(..., tokenize=False)` does.
    ///
    /// The template sees `messages`, `tools` (none when nil, as transformers passes it),
    /// `documents` (none), `add_generation_prompt`, `bos_token`, `eos_token`, then `extra`
    /// (e.g. `enable_thinking`, `date_string`), which may override any of them.
    /// `secondsSince1970` fixes the clock `strftime_now` reads (UTC); nil means now.
    public func render(
        messages: [ChatMessage], addGenerationPrompt: Bool, bosToken: String, eosToken: String,
        tools: [ChatTemplateValue]? = nil, extra: [String: ChatTemplateValue] = [:],
        secondsSince1970: Int? = nil
    ) throws(ChatTemplateError) -> String {
        var context: [String: ChatTemplateValue] = [
            "messages": .array(messages.map(\.templateValue)),
            "tools": tools.map { .array($0) } ?? .none,
            "documents": .none,
            "add_generation_prompt": .bool(addGenerationPrompt),
            "bos_token": .string(bosToken),
            "eos_token": .string(eosToken),
        ]
        context.merge(extra) { $1 }
        let now = secondsSince1970 ?? Int(Date().timeIntervalSince1970)
        let interpreter = TemplateInterpreter(context: context, limits: limits, secondsSince1970: now)
        return try interpreter.render(body)
    }
}
