import FlywheelEngine
import FlywheelJSON

/// A local model as the gateway serves it: the engine's model plus how OpenAI requests become prompt tokens.
/// Immutable, shared by every event loop.
public final class LocalModelAdapter: Sendable {
    /// The `model` name requests use.
    public let name: String
    public let model: any GenerationModel
    /// Chat `messages` (and optional `tools`) to prompt tokens through the model's chat template;
    /// throws a 400 naming the problem (bad message shape, a template that refuses the conversation).
    let chatPrompt: @Sendable (_ messages: [JSON], _ tools: JSON?) throws(OpenAIError) -> [Int32]
    /// A completions `prompt` to tokens (BOS added as the model's tokenizer asks).
    let textPrompt: @Sendable (_ text: String) -> [Int32]
    /// Token ids of a completions prompt given as ids, checked against the vocabulary.
    let vocabularySize: Int

    public init(name: String, model: any GenerationModel, vocabularySize: Int,
                chatPrompt: @escaping @Sendable ([JSON], JSON?) throws(OpenAIError) -> [Int32],
                textPrompt: @escaping @Sendable (String) -> [Int32]) {
        self.name = name
        self.model = model
        self.vocabularySize = vocabularySize
        self.chatPrompt = chatPrompt
        self.textPrompt = textPrompt
    }
}
