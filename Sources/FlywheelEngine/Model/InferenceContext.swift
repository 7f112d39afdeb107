import FlywheelKernels

/// One sequence being evaluated by a model: its KV cache, its position and its logits.
///
/// The forward pass itself (`ForwardPass`: scratch activations for a batch of rows) is made the first time
/// this context evaluates on its own, so sequences that only ever run inside an `InferenceBatch` (the
/// scheduler's) carry their cache and nothing more. Evaluating allocates nothing after that (except the first
/// time `allLogits` asks for more rows of logits than ever before). Not thread-safe: one thread at a time
/// calls into a context (it spreads each step over its `ComputePool` itself). Many contexts can share one
/// `LlamaModel`.
///
/// Prompts run through the batched `Kernels.matMul` in chunks of `batchCapacity` tokens; a single token runs
/// through `Kernels.matVec`. See `ForwardPass` for the layers.
public final class InferenceContext {
    /// The model this context evaluates (shared, read-only).
    public let model: LlamaModel
    /// The most positions this context can hold.
    public let capacity: Int
    /// Tokens evaluated per batched step; longer prompts are split.
    public let batchCapacity: Int
    /// The number of tokens in the cache: the position the next token gets.
    public internal(set) var position = 0
    /// Rows of logits the last `evaluate` produced (1, or the token count with `allLogits`); 0 after
    /// `reset` and `truncate`.
    public private(set) var logitRowCount = 0

    let cache: KVCache
    private let config: ModelConfig
    private let pool: ComputePool
    private let attentionTile: Int
    private let attentionChunk: Int
    private var ownPass: ForwardPass?
    private var logits: UnsafeMutablePointer<Float>
    private var logitsCapacityRows: Int

    /// Positions a new context's KV cache holds before it first grows.
    static let initialCachePositions = 256

    /// Bytes of KV cache allocated now (it grows as the sequence does, up to `capacity` positions).
    public var cacheBytes: Int { cache.allocatedBytes }

    /// Bytes of KV cache per position for `model`.
    public static func cacheBytesPerToken(_ model: LlamaModel) -> Int {
        KVCache.bytesPerPosition(
            layerCount: model.config.layerCount, kvHeadCount: model.config.kvHeadCount,
            headDimension: model.config.headDimension)
    }

    /// Allocates KV cache for `positions` positions now (at most `capacity`), exactly, so evaluating up to there
    /// never reallocates. The cached positions are kept.
    public func reserve(_ positions: Int) {
        cache.reserve(positions, keeping: position, exact: true)
    }

    /// Makes room in the cache for `count` more positions (after `check`).
    func makeRoom(for count: Int) {
        cache.reserve(position + count, keeping: position)
    }

    /// Makes a context for up to `maxTokens` positions (at most the model's context length), with its KV
    /// cache (`layers · kvHeads · headDimension` floats per position, twice; allocated as the sequence grows); scratch for `batchCapacity`
    /// tokens is made when it first evaluates on its own. `pool` does the matrix work; contexts may share a
    /// pool only if they never evaluate at the same time (`ComputePool.run` takes one caller at a time).
    /// Throws `InferenceError.invalidCapacity`.
    public convenience init(model: LlamaModel, maxTokens: Int, pool: ComputePool, batchCapacity: Int = 64) throws {
        try self.init(
            model: model, maxTokens: maxTokens, pool: pool, batchCapacity: batchCapacity, attentionTile: 8,
            attentionChunk: 64)
    }

    /// The same, with the attention blocking chosen (tests use small values to exercise the tiling on
    /// short sequences). `attentionTile`: tokens whose queries walk the cache together; `attentionChunk`:
    /// cache positions per step, a multiple of `KVCache.blockLength`. Neither changes the results.
    init(
        model: LlamaModel, maxTokens: Int, pool: ComputePool, batchCapacity: Int, attentionTile: Int,
        attentionChunk: Int, initialCachePositions: Int = InferenceContext.initialCachePositions
    ) throws {
        precondition(attentionTile >= 1 && attentionChunk >= KVCache.blockLength
                     && attentionChunk % KVCache.blockLength == 0, "attention blocking")
        let config = model.config
        guard maxTokens >= 1, maxTokens <= config.contextLength else {
            throw InferenceError.invalidCapacity(requested: maxTokens, contextLength: config.contextLength)
        }
        self.model = model
        self.config = config
        self.pool = pool
        self.capacity = maxTokens
        self.batchCapacity = max(1, min(batchCapacity, maxTokens))
        self.cache = KVCache(
            layerCount: config.layerCount, kvHeadCount: config.kvHeadCount, maxCapacity: maxTokens,
            initialCapacity: min(maxTokens, initialCachePositions), headDimension: config.headDimension)
        self.attentionTile = attentionTile
        self.attentionChunk = attentionChunk
        self.logits = .allocate(capacity: config.vocabularySize)
        self.logitsCapacityRows = 1
    }

    deinit { logits.deallocate() }

    /// This context's own forward pass, made on first use.
    private var pass: ForwardPass {
        if let ownPass { return ownPass }
        let made = ForwardPass(
            model: model, pool: pool, rowCapacity: batchCapacity, maxPositions: capacity, attentionTile: attentionTile,
            attentionChunk: attentionChunk)
        ownPass = made
        return made
    }

    // MARK: Public API

    /// Appends `tokens` to the sequence and computes logits: the last token's, or every token's when
    /// `allLogits` (rows in token order). Read them with `withLogits` or `logitsArray()`.
    /// Throws `InferenceError` (and changes nothing) when a token is out of range or the context is full.
    public func evaluate(_ tokens: some Collection<Int32>, allLogits: Bool = false) throws {
        try check(tokens)
        let count = tokens.count
        makeRoom(for: count)
        if allLogits { reserveLogitRows(count) }
        let pass = self.pass
        forwardInBatches(tokens) { batch, done in
            if allLogits {
                pass.computeLogits(rows: 0 ..< batch, into: logits + done * config.vocabularySize)
            } else if done + batch == count {
                pass.computeLogits(rows: batch - 1 ..< batch, into: logits)
            }
        }
        logitRowCount = allLogits ? count : 1
    }

    /// A sentence vector for `tokens`: the sequence is reset, the tokens evaluated, and the last layer's output
    /// (the residual stream before the final norm) averaged over the tokens and L2-normalised. Computes no
    /// logits. For drift and outlier checks, which compare prompts as the model represents them.
    /// Throws as `evaluate` does.
    public func meanPooledHiddenState(_ tokens: some Collection<Int32>) throws -> [Float] {
        reset()
        try check(tokens)
        makeRoom(for: tokens.count)
        let d = config.embeddingLength
        var sum = [Double](repeating: 0, count: d)
        let pass = self.pass
        forwardInBatches(tokens) { batch, _ in
            for b in 0 ..< batch {
                let row = pass.output(row: b)
                for i in 0 ..< d { sum[i] += Double(row[i]) }
            }
        }
        let norm = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        reset()
        return sum.map { Float(norm > 0 ? $0 / norm : 0) }
    }

    /// Throws when `tokens` cannot be appended: none, more than the context has room for, or out of range.
    func check(_ tokens: some Collection<Int32>) throws {
        let count = tokens.count
        guard count > 0 else { throw InferenceError.noTokens }
        guard count <= capacity - position else {
            throw InferenceError.contextFull(position: position, adding: count, capacity: capacity)
        }
        for token in tokens where token < 0 || Int(token) >= config.vocabularySize {
            throw InferenceError.tokenOutOfRange(token: token, vocabularySize: config.vocabularySize)
        }
    }

    /// Appends `tokens` in batches of at most `batchCapacity`, calling `afterBatch(batch, done)` once each batch
    /// has run through the layers (its outputs in the pass's rows `0 ..< batch`, `done` tokens before it).
    private func forwardInBatches(_ tokens: some Collection<Int32>, _ afterBatch: (_ batch: Int, _ done: Int) -> Void) {
        let pass = self.pass
        let count = tokens.count
        var index = tokens.startIndex
        var done = 0
        while done < count {
            let batch = min(batchCapacity, count - done)
            for b in 0 ..< batch {
                pass.embed(tokens[index], row: b)
                tokens.formIndex(after: &index)
            }
            pass.run([ForwardPass.Segment(cache: cache, start: position, rows: 0 ..< batch)], rows: batch)
            afterBatch(batch, done)
            position += batch
            done += batch
        }
    }

    /// Calls `body` with the logits of the last `evaluate`: `logitRowCount` rows of `vocabularySize`.
    /// The buffer is valid only during the call and is overwritten by the next `evaluate`.
    public func withLogits<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: logits, count: logitRowCount * config.vocabularySize))
    }

    /// The first row of the logits of the last evaluation, writable (the sampler applies penalties in place).
    /// Valid until the next evaluation.
    var lastLogits: UnsafeMutableBufferPointer<Float> {
        UnsafeMutableBufferPointer(start: logits, count: config.vocabularySize)
    }

    /// A copy of the logits of the last `evaluate` (allocates; for tests and tools).
    public func logitsArray() -> [Float] {
        withLogits { Array($0) }
    }

    /// Forgets the whole sequence.
    public func reset() {
        position = 0
        logitRowCount = 0
    }

    /// Keeps the first `newPosition` tokens and forgets the rest, so a shared prompt prefix can be reused.
    /// Throws `InferenceError.invalidTruncation` unless `0 <= newPosition <= position`.
    public func truncate(to newPosition: Int) throws {
        guard newPosition >= 0, newPosition <= position else {
            throw InferenceError.invalidTruncation(to: newPosition, position: position)
        }
        position = newPosition
        logitRowCount = 0
    }

    /// Forgets everything, then takes the first `count` positions of `other`'s cache (a prompt prefix another
    /// sequence of the same model already evaluated), so they need not be evaluated again.
    /// Throws `InferenceError.invalidTruncation` unless `0 <= count <= other.position` and `count <= capacity`.
    public func copyPrefix(of other: InferenceContext, count: Int) throws {
        guard other.model === model, count >= 0, count <= other.position, count <= capacity else {
            throw InferenceError.invalidTruncation(to: count, position: other.position)
        }
        cache.copyPrefix(of: other.cache, positions: count)
        position = count
        logitRowCount = 0
    }

    /// Marks `count` more positions as evaluated by a batch (which wrote their keys and values).
    func advance(by count: Int, logits: UnsafePointer<Float>?) {
        position += count
        if let logits {
            self.logits.update(from: logits, count: config.vocabularySize)
            logitRowCount = 1
        } else {
            logitRowCount = 0
        }
    }

    /// Grows the logits buffer to hold `rows` rows (the only allocation after the first evaluation, and only
    /// when a call asks for more rows of logits than any call before).
    private func reserveLogitRows(_ rows: Int) {
        guard rows > logitsCapacityRows else { return }
        logits.deallocate()
        logits = .allocate(capacity: rows * config.vocabularySize)
        logitsCapacityRows = rows
    }
}
