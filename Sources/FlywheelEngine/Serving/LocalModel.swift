import FlywheelChatTemplate
import FlywheelKernels
import FlywheelTokenizer

/// A GGUF model ready to serve: weights, tokenizer, chat template and context size, under the name
/// requests use. Immutable and shareable; sequences made from it run on the scheduler thread and
/// spread their matrix work over the shared `ComputePool`.
public final class LocalModel: GenerationModel {
    public let name: String
    public let path: String
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    /// Nil when the file has none (or one that does not parse) and no override was given: chat
    /// requests then get a clear error, completions still work.
    public let chatTemplate: ChatTemplate?
    /// Why the file's chat template cannot be used, when it cannot (reported at start-up and to chat requests).
    public let chatTemplateProblem: String?
    /// Tokens per sequence (prompt plus completion).
    public let contextLength: Int
    private let pool: ComputePool
    /// The batch evaluator the scheduler thread uses, made on first use.
    private let batch = BatchHolder()
    /// The pool this model's contexts compute on (for embeddings, which make their own contexts).
    var computePool: ComputePool { pool }

    /// The context used when none is configured: the model's own, capped so a 128k-context model does
    /// not reserve gigabytes of KV cache per slot.
    public static let defaultContextCap = 4096

    /// Loads `path`. `contextLength` defaults to the model's (at most `defaultContextCap`);
    /// `chatTemplate` replaces the file's `tokenizer.chat_template`.
    public init(name: String, path: String, contextLength: Int? = nil, chatTemplate: String? = nil,
                pool: ComputePool) throws(LocalModelError) {
        let file: GGUFFile
        do {
            file = try GGUFFile(path: path)
        } catch {
            throw .file(path: path, reason: "\(error)")
        }
        do {
            model = try LlamaModel(file: file)
        } catch {
            throw .model(path: path, reason: "\(error)")
        }
        do {
            tokenizer = Tokenizer(try TokenizerVocabulary(gguf: file))
        } catch {
            throw .tokenizer(path: path, reason: "\(error)")
        }
        guard tokenizer.vocabularySize <= model.config.vocabularySize else {
            throw .tokenizer(path: path, reason: "the vocabulary has \(tokenizer.vocabularySize) tokens but the model only \(model.config.vocabularySize) logits")
        }
        if let chatTemplate {
            // An override is the operator's own: a mistake in it must stop the start.
            do {
                self.chatTemplate = try ChatTemplate(source: chatTemplate)
            } catch {
                throw .chatTemplateInvalid(model: name, reason: "\(error)")
            }
            self.chatTemplateProblem = nil
        } else if let source = file.metadata["tokenizer.chat_template"]?.stringValue {
            do {
                self.chatTemplate = try ChatTemplate(source: source)
                self.chatTemplateProblem = nil
            } catch {
                self.chatTemplate = nil
                self.chatTemplateProblem = LocalModelError.chatTemplateInvalid(model: name, reason: "\(error)").description
            }
        } else {
            self.chatTemplate = nil
            self.chatTemplateProblem = LocalModelError.noChatTemplate(model: name).description
        }
        let native = model.config.contextLength
        self.contextLength = min(contextLength ?? min(native, Self.defaultContextCap), native)
        self.name = name
        self.path = path
        self.pool = pool
    }

    /// One line for logs: architecture, size, context, and the weights' types in the file (and which of
    /// them were requantized to Q8_0 at load).
    public var summary: String {
        let c = model.config
        return "\(c.architecture.rawValue), \(c.layerCount) layers, d=\(c.embeddingLength), heads \(c.headCount)/\(c.kvHeadCount), vocab \(c.vocabularySize), context \(contextLength) of \(c.contextLength), weights \(model.weights.typeSummary)"
    }

    // MARK: prompts

    /// Renders `messages` through the chat template (with the generation prompt) and tokenizes the
    /// result, special-token texts included. BOS is added when the tokenizer asks for it and the
    /// template did not already write it.
    public func chatPromptTokens(_ messages: [ChatMessage], tools: [ChatTemplateValue]? = nil) throws(LocalModelError) -> [Int32] {
        guard let chatTemplate else {
            throw chatTemplateProblem.map { .chatUnavailable($0) } ?? .noChatTemplate(model: name)
        }
        let bos = tokenizer.bosID.flatMap(tokenizer.tokenText) ?? ""
        let eos = tokenizer.eosID.flatMap(tokenizer.tokenText) ?? ""
        let text: String
        do {
            text = try chatTemplate.render(messages: messages, addGenerationPrompt: true, bosToken: bos, eosToken: eos, tools: tools)
        } catch {
            throw .chatTemplateFailed(model: name, reason: "\(error)")
        }
        return withBOS(tokenizer.encode(text, addSpecial: false, parseSpecial: true))
    }

    /// Tokenizes a completions prompt: BOS as the tokenizer asks, special-token texts recognised
    /// (as llama.cpp's server does).
    public func textPromptTokens(_ text: String) -> [Int32] {
        withBOS(tokenizer.encode(text, addSpecial: false, parseSpecial: true))
    }

    private func withBOS(_ tokens: [Int32]) -> [Int32] {
        guard tokenizer.addsBOS, let bos = tokenizer.bosID, tokens.first != bos else { return tokens }
        return [bos] + tokens
    }

    // MARK: GenerationModel

    /// A sequence whose KV cache starts at one key block: the scheduler reserves what each generation may use
    /// (`reserve`), so the cache budget counts what is really held.
    public func makeSequence(capacity: Int) throws -> any TokenSequence {
        try ContextSequence(context: InferenceContext(
            model: model, maxTokens: min(capacity, contextLength), pool: pool, batchCapacity: 64, attentionTile: 8,
            attentionChunk: 64, initialCachePositions: KVCache.blockLength))
    }

    public var cacheBytesPerToken: Int { InferenceContext.cacheBytesPerToken(model) }

    /// One forward pass per step for all of this model's sequences in the batch (`InferenceBatch`).
    public func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
        -> [UnsafeMutableBufferPointer<Float>] {
        var work: [(context: InferenceContext, tokens: ArraySlice<Int32>)] = []
        work.reserveCapacity(entries.count)
        for (sequence, tokens) in entries {
            guard let sequence = sequence as? ContextSequence else {
                throw InferenceError.notBatchable("a sequence not made by this model")
            }
            work.append((sequence.context, tokens))
        }
        try batch.evaluator(model: model, pool: pool, maxPositions: contextLength).evaluate(work)
        return entries.map { ($0.sequence as! ContextSequence).didAppend($0.tokens) }
    }

    public func isEndOfGeneration(_ token: Int32) -> Bool {
        tokenizer.isEndOfGeneration(token)
    }

    public func makeTextStream() -> any TokenTextStream {
        TokenStreamDecoder(tokenizer: tokenizer, skipSpecial: true, asContinuation: true)
    }
}

extension TokenStreamDecoder: TokenTextStream {}

/// A `TokenSequence` over an `InferenceContext`: remembers which tokens are cached; the sampler reads (and
/// applies penalties in place to) the context's own logits.
final class ContextSequence: TokenSequence {
    let context: InferenceContext
    private(set) var tokens: [Int32] = []

    init(context: InferenceContext) {
        self.context = context
        tokens.reserveCapacity(context.capacity)
    }

    var capacity: Int { context.capacity }

    func truncate(to count: Int) {
        guard count < tokens.count else { return }
        if count == 0 {
            context.reset()
        } else {
            // In range by construction (count < tokens.count == position), so this cannot throw.
            try? context.truncate(to: count)
        }
        tokens.removeLast(tokens.count - count)
    }

    func append(_ new: ArraySlice<Int32>) throws -> UnsafeMutableBufferPointer<Float> {
        try context.evaluate(new)
        return didAppend(new)
    }

    /// Records tokens the context has just evaluated (alone or in a batch) and returns its logits.
    func didAppend(_ new: ArraySlice<Int32>) -> UnsafeMutableBufferPointer<Float> {
        tokens.append(contentsOf: new)
        return context.lastLogits
    }

    func reserve(_ count: Int) { context.reserve(count) }

    var reservedBytes: Int { context.cacheBytes }

    func adoptPrefix(of other: any TokenSequence, count: Int) -> Bool {
        guard let other = other as? ContextSequence, other !== self, count <= other.tokens.count,
              (try? context.copyPrefix(of: other.context, count: count)) != nil else { return false }
        tokens.removeAll(keepingCapacity: true)
        tokens.append(contentsOf: other.tokens.prefix(count))
        return true
    }
}

/// Holds a model's `InferenceBatch`. Only the scheduler thread (the one caller of the model's pool) touches it,
/// hence `@unchecked Sendable`.
final class BatchHolder: @unchecked Sendable {
    private var made: InferenceBatch?

    func evaluator(model: LlamaModel, pool: ComputePool, maxPositions: Int) -> InferenceBatch {
        if let made { return made }
        let batch = InferenceBatch(model: model, pool: pool, maxPositions: maxPositions)
        made = batch
        return batch
    }
}
