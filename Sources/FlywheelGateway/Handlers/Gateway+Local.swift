import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON

extension Gateway {
    /// Answers a chat, completions or embeddings request whose model is served in process (route `local`);
    /// embeddings go on to `serveLocalEmbeddings`.
    /// Called on the event loop after the common checks (auth, JSON, required fields); never blocks it:
    /// tokenizing and template rendering are quick, the generation runs on the scheduler thread.
    /// With a `fallback`, a request this model cannot take (too long for its context, a template it cannot
    /// render, a field local models do not support, an endpoint it does not serve) goes to the next target
    /// instead of being refused; an invalid request is refused as usual.
    func serveLocally(_ object: JSONObject, entry: LocalModelAdapter, inference: LocalInference?, endpoint: InferenceEndpoint,
                      context: RequestContext, writer: any ResponseSink, fallback: Fallback? = nil) {
        guard let inference else {
            if let fallback, fallback.handOver("unsupported_endpoint") { return }
            return ledger.reject(context, .invalidRequest("The local model '\(entry.name)' does not serve \(endpoint.rawValue).", param: "model"),
                                  writer: writer)
        }
        if endpoint == .embeddings {
            return serveLocalEmbeddings(object, entry: entry, inference: inference, context: context, writer: writer, fallback: fallback)
        }
        let chat = endpoint == .chatCompletions
        do throws(OpenAIError) {
            let options = try LocalGenerationOptions(object, chat: chat, maxTokensLimit: (context.settings ?? settings).configuration.inference.maxTokensLimit)
            if let bad = options.sampling.logitBias.keys.first(where: { Int($0) >= entry.vocabularySize }) {
                throw .invalidRequest("'logit_bias' names token \(bad), but the vocabulary has \(entry.vocabularySize) tokens.", param: "logit_bias", code: OpenAIError.localModelLimit)
            }
            let prompt = try chat ? Self.chatPromptTokens(object, entry: entry) : Self.completionPromptTokens(object, entry: entry)
            try Self.checkPromptFits(prompt, contextLength: entry.model.contextLength, chat: chat)
            var request = GenerationRequest(promptTokens: prompt, maxTokens: options.maxTokens, sampling: options.sampling, stop: options.stop)
            request.maxTokensFitsBudget = options.maxTokensIsDefault
            let exchange = LocalExchange(ledger: ledger, writer: writer, context: context, modelName: entry.name,
                                         stream: options.stream, includeUsage: options.includeUsage, chat: chat, fallback: fallback)
            exchange.start(inference: inference, model: entry.model, request: request)
        } catch {
            // Only what this model cannot do goes elsewhere; a request that is wrong for every model is refused here.
            if let fallback, let code = error.code, OpenAIError.localCapabilityCodes.contains(code), fallback.handOver(code) { return }
            ledger.reject(context, error, writer: writer)
        }
    }

    /// The prompt tokens of a chat request: its `messages` (and `tools`, unless `tool_choice` is
    /// "none") through the model's chat template.
    static func chatPromptTokens(_ object: JSONObject, entry: LocalModelAdapter) throws(OpenAIError) -> [Int32] {
        let messages = object["messages"]?.arrayValue ?? []
        var tools = object["tools"]
        if tools == .null || object["tool_choice"] == .string("none") { tools = nil }
        return try entry.chatPrompt(messages, tools)
    }

    /// The prompt tokens of a completions request: `prompt` as one string (or a one-string array) or
    /// one array of token ids. An empty prompt is refused here, naming `prompt`: the model needs at
    /// least one token to continue from (a BOS the tokenizer would add is not the client's text).
    static func completionPromptTokens(_ object: JSONObject, entry: LocalModelAdapter) throws(OpenAIError) -> [Int32] {
        let empty = OpenAIError.invalidRequest("'prompt' is empty; local models need at least one token of text to continue.",
                                               param: "prompt")
        switch object["prompt"] {
        case .string(let text)?:
            guard !text.isEmpty else { throw empty }
            return entry.textPrompt(text)
        case .array(let items)? where items.isEmpty:
            throw empty
        case .array(let items)? where items.count == 1 && items[0].stringValue != nil:
            let text = items[0].stringValue!
            guard !text.isEmpty else { throw empty }
            return entry.textPrompt(text)
        case .array(let items)? where items.allSatisfy({ $0.intValue != nil }):
            var ids: [Int32] = []
            for item in items {
                guard let id = item.intValue, id >= 0, id < entry.vocabularySize else {
                    throw .invalidRequest("'prompt' token ids must be in 0..<\(entry.vocabularySize).", param: "prompt")
                }
                ids.append(Int32(id))
            }
            return ids
        default:
            throw .invalidRequest("Local models take 'prompt' as one string or one array of token ids.", param: "prompt")
        }
    }

    /// Refuses, before anything is queued, a prompt that is empty or leaves no room in the model's
    /// context, naming the field the client sent: `messages` for chat, `prompt` for completions.
    /// (The scheduler checks the same, but cannot know which field the tokens came from.)
    static func checkPromptFits(_ prompt: [Int32], contextLength: Int, chat: Bool) throws(OpenAIError) {
        let field = chat ? "messages" : "prompt"
        guard !prompt.isEmpty else {
            throw .invalidRequest(chat ? "The 'messages' rendered to an empty prompt; send at least one message with content."
                                       : "'prompt' is empty; local models need at least one token of text to continue.",
                                  param: field)
        }
        guard prompt.count < contextLength else {
            let what = chat ? "your messages resulted in \(prompt.count) tokens" : "your prompt has \(prompt.count) tokens"
            throw .invalidRequest(
                "This model's maximum context length is \(contextLength) tokens. However, \(what), which leaves no room to generate. Please reduce the length of the \(field).",
                param: field, code: "context_length_exceeded")
        }
    }
}
