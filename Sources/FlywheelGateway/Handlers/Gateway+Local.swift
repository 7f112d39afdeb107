import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON

extension Gateway {
    /// Answers a chat or completions request whose model is served in process (route `local`).
    /// Called on the event loop after the common checks (auth, JSON, required fields); never blocks it:
    /// tokenizing and template rendering are quick, the generation runs on the scheduler thread.
    func serveLocally(_ object: JSONObject, entry: LocalModelEntry, endpoint: InferenceEndpoint,
                      context: RequestContext, writer: HTTPResponseWriter) {
        guard let scheduler = inference, endpoint != .embeddings else {
            return fail(context, .invalidRequest("The local model '\(entry.name)' does not serve \(endpoint.rawValue).", param: "model"),
                        writer: writer)
        }
        let chat = endpoint == .chatCompletions
        do throws(OpenAIError) {
            let options = try LocalGenerationOptions(object, chat: chat, maxTokensLimit: configuration.inference.maxTokensLimit)
            if let bad = options.sampling.logitBias.keys.first(where: { Int($0) >= entry.vocabularySize }) {
                throw .invalidRequest("'logit_bias' names token \(bad), but the vocabulary has \(entry.vocabularySize) tokens.", param: "logit_bias")
            }
            let prompt = try chat ? chatPromptTokens(object, entry: entry) : completionPromptTokens(object, entry: entry)
            let request = GenerationRequest(promptTokens: prompt, maxTokens: options.maxTokens, sampling: options.sampling, stop: options.stop)
            let exchange = LocalExchange(ledger: ledger, writer: writer, context: context, modelName: entry.name,
                                         stream: options.stream, includeUsage: options.includeUsage, chat: chat)
            exchange.start(scheduler: scheduler, model: entry.model, request: request)
        } catch {
            fail(context, error, writer: writer)
        }
    }

    private func chatPromptTokens(_ object: JSONObject, entry: LocalModelEntry) throws(OpenAIError) -> [Int32] {
        let messages = object["messages"]?.arrayValue ?? []
        var tools = object["tools"]
        if tools == .null || object["tool_choice"] == .string("none") { tools = nil }
        return try entry.chatPrompt(messages, tools)
    }

    private func completionPromptTokens(_ object: JSONObject, entry: LocalModelEntry) throws(OpenAIError) -> [Int32] {
        switch object["prompt"] {
        case .string(let text)?:
            return entry.textPrompt(text)
        case .array(let items)? where items.count == 1 && items[0].stringValue != nil:
            return entry.textPrompt(items[0].stringValue!)
        case .array(let items)? where !items.isEmpty && items.allSatisfy({ $0.intValue != nil }):
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
}
