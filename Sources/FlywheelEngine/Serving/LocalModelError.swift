import FlywheelChatTemplate
import FlywheelTokenizer

/// Why a local model could not be loaded or could not turn a request into a prompt.
public enum LocalModelError: Error, CustomStringConvertible, Sendable {
    /// The file could not be opened or is not a valid GGUF file.
    case file(path: String, reason: String)
    /// The file is GGUF, but its model is not one the engine runs (architecture, tensors, types).
    case model(path: String, reason: String)
    /// The tokenizer metadata is missing or invalid.
    case tokenizer(path: String, reason: String)
    /// The chat template (from the file or the override) does not parse.
    case chatTemplateInvalid(model: String, reason: String)
    /// Chat was requested but the model has no chat template and none was configured.
    case noChatTemplate(model: String)
    /// Chat was requested but the model's template could not be loaded (the reason says why).
    case chatUnavailable(String)
    /// The template refused the conversation (`raise_exception`) or failed while rendering.
    case chatTemplateFailed(model: String, reason: String)
    /// Two models to load share a name, so requests could not tell them apart.
    case duplicateModelName(String)

    public var description: String {
        switch self {
        case .file(let path, let reason): return "cannot load \(path): \(reason)"
        case .model(let path, let reason): return "cannot run the model in \(path): \(reason)"
        case .tokenizer(let path, let reason): return "the tokenizer in \(path) is unusable: \(reason)"
        case .chatTemplateInvalid(let model, let reason):
            return "the chat template of '\(model)' cannot be used: \(reason). Set chat_template in the config to override it."
        case .noChatTemplate(let model):
            return "the model '\(model)' has no chat template (tokenizer.chat_template); set chat_template in the config, or use /v1/completions"
        case .chatUnavailable(let reason): return reason
        case .chatTemplateFailed(let model, let reason):
            return "the chat template of '\(model)' could not render these messages: \(reason)"
        case .duplicateModelName(let name):
            return "two local models are named '\(name)'; each needs its own name"
        }
    }
}
