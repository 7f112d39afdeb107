/// The fuzzed parsers. Each `run` takes one input, drives the parser and checks its invariants; a violated
/// invariant or a memory error stops the process (libFuzzer then saves the input).
public enum FuzzTarget: String, CaseIterable, Sendable {
    case http
    case json
    case gguf
    case tokenizer
    case chatTemplate = "chat-template"

    public func run(_ data: UnsafeRawBufferPointer) {
        let bytes = Array(data)
        switch self {
        case .http: HTTPHarness.run(bytes)
        case .json: JSONHarness.run(bytes)
        case .gguf: GGUFHarness.run(bytes)
        case .tokenizer: TokenizerHarness.run(bytes)
        case .chatTemplate: ChatTemplateHarness.run(bytes)
        }
    }
}
