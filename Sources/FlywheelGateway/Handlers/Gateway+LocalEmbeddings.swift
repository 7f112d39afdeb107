import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON

extension Gateway {
    /// Answers `POST /v1/embeddings` for a model served in process: one mean-pooled, L2-normalised hidden state
    /// per input (`LocalInference.embed`), in OpenAI's shape. Called on the event loop after the common checks.
    /// The fields are checked here (400 naming the field and the input's index); texts are tokenized as a
    /// completions prompt is (BOS as the tokenizer asks), off the loop when they are large. With a `fallback`,
    /// what only this model cannot do (`dimensions` other than its width, an input longer than its context, a
    /// model that serves no embeddings) goes to the next target.
    func serveLocalEmbeddings(_ object: JSONObject, entry: LocalModelAdapter, inference: LocalInference,
                              context: RequestContext, writer: any ResponseSink, fallback: Fallback?) {
        guard let model = entry.model as? LocalModel else {
            if let fallback, fallback.handOver("unsupported_endpoint") { return }
            return ledger.reject(context, .invalidRequest("The local model '\(entry.name)' does not serve /v1/embeddings.", param: "model"),
                                 writer: writer)
        }
        let request: LocalEmbeddingRequest
        do throws(OpenAIError) {
            request = try LocalEmbeddingRequest(object, width: model.model.config.embeddingLength, vocabularySize: entry.vocabularySize)
        } catch {
            return refuseLocally(error, context: context, writer: writer, fallback: fallback)
        }
        let exchange = LocalEmbeddingExchange(ledger: ledger, writer: writer, context: context, modelName: entry.name,
                                              encoding: request.encoding, fallback: fallback)
        let textPrompt = entry.textPrompt
        let contextLength = model.contextLength
        let tokenize: @Sendable () -> Result<[[Int32]], OpenAIError> = {
            do throws(OpenAIError) {
                return .success(try request.tokens(textPrompt: textPrompt, contextLength: contextLength))
            } catch {
                return .failure(error)
            }
        }
        let proceed: @Sendable (Result<[[Int32]], OpenAIError>) -> Void = { [self] tokens in
            switch tokens {
            case .success(let inputs): exchange.start(inference: inference, model: model, inputs: inputs)
            case .failure(let error): refuseLocally(error, context: context, writer: writer, fallback: fallback)
            }
        }
        guard request.textBytes >= Self.offloadParseBytes else { return proceed(tokenize()) }
        // Megabytes of text take a while to tokenize: not on the loop, which serves other connections.
        let loop = writer.eventLoop
        LocalEmbeddingExchange.workQueue.async {
            let tokens = tokenize()
            loop.execute { proceed(tokens) }
        }
    }

    /// Refuses a request a local model will not serve, or hands it to the fallback when the refusal is about
    /// this model rather than the request.
    func refuseLocally(_ error: OpenAIError, context: RequestContext, writer: any ResponseSink, fallback: Fallback?) {
        if let fallback, let code = error.code, OpenAIError.localCapabilityCodes.contains(code), fallback.handOver(code) { return }
        ledger.reject(context, error, writer: writer)
    }
}
