import Dispatch
import Synchronization

/// A batch of embeddings being computed (`LocalInference.embed`). `cancel` stops it before its next input: the
/// completion then gets `.cancelled` (an input already being evaluated finishes first).
public final class EmbeddingHandle: Sendable {
    private let cancelled = Atomic<Bool>(false)

    public init() {}

    public func cancel() { cancelled.store(true, ordering: .relaxed) }
    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }
}

extension LocalInference {
    /// Computes one sentence vector per input on `model` (one of `models`): the last hidden state averaged over
    /// the input's tokens and L2-normalised (`InferenceContext.meanPooledHiddenState`), `model.model.config
    /// .embeddingLength` floats each, in input order.
    ///
    /// The work runs on the scheduler thread (the only one that may use the compute pool), one input per
    /// `perform` task, each in a context sized to that input: generations take a step between two inputs, so
    /// their streams keep flowing while a long batch is embedded, and concurrent batches take turns. Only one
    /// task of a batch is queued at a time, so a batch holds at most one place in the scheduler's queue of tasks
    /// (`limits.maxQueued`); a batch that finds the queue full after its first input waits for room instead of
    /// failing half done.
    ///
    /// `completion` is called once, on the scheduler thread (or, for a batch that ended while waiting for room in
    /// the queue, on a dispatch thread), and must not block: `.success` with the vectors, or `.failure` with
    /// `cancelled` (see the handle), `shuttingDown`, or `evaluationFailed` (the model produced a non-finite
    /// vector, or could not make a context). Throws without queueing anything: `emptyPrompt` when there are no
    /// inputs or one is empty, `contextLengthExceeded` when an input has more tokens than `model.contextLength`,
    /// `evaluationFailed` for a token outside the vocabulary (callers that know which field the tokens came from
    /// check these first), `queueFull` or `shuttingDown`.
    @discardableResult
    public func embed(model: LocalModel, inputs: [[Int32]],
                      completion: @escaping @Sendable (Result<[[Float]], GenerationError>) -> Void) throws(GenerationError) -> EmbeddingHandle {
        guard !inputs.isEmpty, inputs.allSatisfy({ !$0.isEmpty }) else { throw .emptyPrompt }
        if let long = inputs.first(where: { $0.count > model.contextLength }) {
            throw .contextLengthExceeded(promptTokens: long.count, contextLength: model.contextLength)
        }
        let vocabulary = model.model.config.vocabularySize
        for tokens in inputs {
            if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
                throw .evaluationFailed("token \(bad) is outside the vocabulary of \(vocabulary) tokens")
            }
        }
        let handle = EmbeddingHandle()
        let batch = EmbeddingBatch(model: model, inputs: inputs, handle: handle, completion: completion)
        try perform { [weak self] result in batch.run(result, inference: self) }
        return handle
    }
}

/// One `embed` call's progress. Its mutable state is touched only by the task running on the scheduler thread
/// (tasks of one batch never overlap: the next is queued by the one before, as it ends).
private final class EmbeddingBatch: @unchecked Sendable {
    private let model: LocalModel
    private let inputs: [[Int32]]
    private let handle: EmbeddingHandle
    private let completion: @Sendable (Result<[[Float]], GenerationError>) -> Void
    private var vectors: [[Float]] = []

    init(model: LocalModel, inputs: [[Int32]], handle: EmbeddingHandle,
         completion: @escaping @Sendable (Result<[[Float]], GenerationError>) -> Void) {
        self.model = model
        self.inputs = inputs
        self.handle = handle
        self.completion = completion
        vectors.reserveCapacity(inputs.count)
    }

    /// On the scheduler thread: embeds the next input, then queues the task for the one after it.
    func run(_ turn: Result<Void, GenerationError>, inference: LocalInference?) {
        if case .failure(let error) = turn { return completion(.failure(error)) }
        guard let inference else { return completion(.failure(.shuttingDown)) }
        if handle.isCancelled { return completion(.failure(.cancelled)) }
        let tokens = inputs[vectors.count]
        do {
            let context = try InferenceContext(model: model.model, maxTokens: tokens.count, pool: model.computePool)
            let vector = try context.meanPooledHiddenState(tokens)
            guard vector.allSatisfy(\.isFinite) else {
                return completion(.failure(.evaluationFailed("the embedding of input \(vectors.count) is not finite")))
            }
            vectors.append(vector)
        } catch {
            return completion(.failure(.evaluationFailed("\(error)")))
        }
        if vectors.count == inputs.count {
            let done = vectors
            vectors = []
            return completion(.success(done))
        }
        queueNext(on: inference)
    }

    /// Queues the task for the next input. When other work filled the queue in the meantime, tries again shortly
    /// from another thread (running on here would hold the scheduler thread, and so that queue, until the whole
    /// batch is done), so a batch already started is never failed for a full queue.
    private func queueNext(on inference: LocalInference) {
        do throws(GenerationError) {
            try inference.perform { [weak inference] result in self.run(result, inference: inference) }
        } catch .queueFull {
            if handle.isCancelled { return completion(.failure(.cancelled)) }
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(1)) { [weak inference] in
                guard let inference else { return self.completion(.failure(.shuttingDown)) }
                self.queueNext(on: inference)
            }
        } catch {
            completion(.failure(error))
        }
    }
}
