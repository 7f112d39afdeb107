#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FlywheelKernels

/// One sequence being evaluated by a model: its KV cache, its scratch activations and its logits.
///
/// Everything is allocated in `init`; evaluating tokens allocates nothing (except the first time
/// `allLogits` asks for more rows of logits than ever before). Not thread-safe: one thread at a time
/// calls into a context (it spreads each step over its `ComputePool` itself). Many contexts can share
/// one `LlamaModel`.
///
/// The forward pass for a batch of B tokens at positions p ..< p + B (d = embedding, f = feed-forward):
/// ```
/// x = E[tokens]                                                (B, d)
/// for each layer:
///     xb = rmsnorm(x) ⊙ w_attn_norm
///     q, k, v = Wq xb + bq, Wk xb + bk, Wv xb + bv; rope(q, k)  (B, H·hd), (B, KV·hd)
///     K/V cache[p ..< p + B] = k, v
///     a_h = softmax(q_h · K_g[0 ... pos]ᵀ / √hd) V_g            g = h / (H / KV), causal
///     x += Wo a                                                (B, d)
///     xb = rmsnorm(x) ⊙ w_ffn_norm
///     x += W2 (silu(W1 xb) ⊙ W3 xb)                            (B, f) -> (B, d)
/// logits = Wout (rmsnorm(x) ⊙ w_out_norm)                      (vocab)
/// ```
/// Prompts run through the batched `Kernels.matMul` in chunks of `batchCapacity` tokens; a single
/// token runs through `Kernels.matVec`. Each layer is five `pool.run`s: q/k/v (with RoPE and the cache
/// write), attention, Wo (with the residual add), W1/W3 (with SiLU and the product), W2 (with the
/// residual add). RMSNorm and activation quantization run on the calling thread between them.
public final class InferenceContext {
    /// The model this context evaluates (shared, read-only).
    public let model: LlamaModel
    /// The most positions this context can hold.
    public let capacity: Int
    /// Tokens evaluated per batched step; longer prompts are split.
    public let batchCapacity: Int
    /// The number of tokens in the cache: the position the next token gets.
    public private(set) var position = 0
    /// Rows of logits the last `evaluate` produced (1, or the token count with `allLogits`); 0 after
    /// `reset` and `truncate`.
    public private(set) var logitRowCount = 0

    private let config: ModelConfig
    private let weights: ModelWeights
    private let pool: ComputePool
    private let cache: KVCache
    private let scratch: ScratchBuffers
    /// The angle per position of every RoPE pair i: base^(-2i / ropeDimensionCount), scaled.
    private let inverseFrequencies: [Double]
    private var logits: UnsafeMutablePointer<Float>
    private var logitsCapacityRows: Int

    /// Makes a context for up to `maxTokens` positions (at most the model's context length), with its KV
    /// cache (`layers · kvHeads · maxTokens · headDimension` floats, twice) and scratch for `batchCapacity`
    /// tokens. `pool` does the matrix work; contexts may share a pool only if they never evaluate at the
    /// same time (`ComputePool.run` takes one caller at a time). Throws `InferenceError.invalidCapacity`.
    public init(model: LlamaModel, maxTokens: Int, pool: ComputePool, batchCapacity: Int = 64) throws {
        let config = model.config
        guard maxTokens >= 1, maxTokens <= config.contextLength else {
            throw InferenceError.invalidCapacity(requested: maxTokens, contextLength: config.contextLength)
        }
        self.model = model
        self.config = config
        self.weights = model.weights
        self.pool = pool
        self.capacity = maxTokens
        self.batchCapacity = max(1, min(batchCapacity, maxTokens))
        self.cache = KVCache(
            layerCount: config.layerCount, kvHeadCount: config.kvHeadCount, capacity: maxTokens,
            headDimension: config.headDimension)
        self.scratch = ScratchBuffers(
            config: config, batchCapacity: self.batchCapacity, capacity: maxTokens, threadCount: pool.threadCount)
        // Pair i turns by position / linearScale · base^(-2i / ropeDims) / factor[i].
        let ropeDimensions = Double(config.ropeDimensionCount)
        let factors = model.weights.ropeFrequencyFactors
        self.inverseFrequencies = (0 ..< config.ropeDimensionCount / 2).map { i in
            pow(config.ropeFrequencyBase, -2 * Double(i) / ropeDimensions)
                / config.ropeLinearScale / Double(factors?[i] ?? 1)
        }
        self.logits = .allocate(capacity: config.vocabularySize)
        self.logitsCapacityRows = 1
    }

    deinit { logits.deallocate() }

    // MARK: Public API

    /// Appends `tokens` to the sequence and computes logits: the last token's, or every token's when
    /// `allLogits` (rows in token order). Read them with `withLogits` or `logitsArray()`.
    /// Throws `InferenceError` (and changes nothing) when a token is out of range or the context is full.
    public func evaluate(_ tokens: some Collection<Int32>, allLogits: Bool = false) throws {
        let count = tokens.count
        guard count > 0 else { throw InferenceError.noTokens }
        guard count <= capacity - position else {
            throw InferenceError.contextFull(position: position, adding: count, capacity: capacity)
        }
        for token in tokens where token < 0 || Int(token) >= config.vocabularySize {
            throw InferenceError.tokenOutOfRange(token: token, vocabularySize: config.vocabularySize)
        }
        if allLogits { reserveLogitRows(count) }

        var index = tokens.startIndex
        var done = 0
        while done < count {
            let batch = min(batchCapacity, count - done)
            for b in 0 ..< batch {
                weights.embed(token: Int(tokens[index]), into: scratch.residual + b * config.embeddingLength)
                tokens.formIndex(after: &index)
            }
            forward(batch: batch, start: position)
            if allLogits {
                computeLogits(rows: 0 ..< batch, into: logits + done * config.vocabularySize)
            } else if done + batch == count {
                computeLogits(rows: batch - 1 ..< batch, into: logits)
            }
            position += batch
            done += batch
        }
        logitRowCount = allLogits ? count : 1
    }

    /// Calls `body` with the logits of the last `evaluate`: `logitRowCount` rows of `vocabularySize`.
    /// The buffer is valid only during the call and is overwritten by the next `evaluate`.
    public func withLogits<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        try body(UnsafeBufferPointer(start: logits, count: logitRowCount * config.vocabularySize))
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

    // MARK: The forward pass

    /// Runs every layer on the `batch` embedded tokens in `scratch.residual`, at positions `start ..< start + batch`.
    private func forward(batch: Int, start: Int) {
        computeRoPEAngles(batch: batch, start: start)
        for layer in 0 ..< config.layerCount {
            let w = weights.layers[layer]
            normalizeAndQuantize(batch: batch, weight: w.attentionNorm)
            projectQKV(w, layer: layer, batch: batch, start: start)
            attend(layer: layer, batch: batch, start: start)
            quantize(scratch.attention, rows: batch, columns: config.queryLength)
            projectAndAccumulate(w.attentionOutput, batch: batch)
            normalizeAndQuantize(batch: batch, weight: w.feedForwardNorm)
            gatedFeedForward(w, batch: batch)
            quantize(scratch.gate, rows: batch, columns: config.feedForwardLength)
            projectAndAccumulate(w.down, batch: batch)
        }
    }

    /// cos/sin of position · inverseFrequency[i] for every token of the batch.   (B, ropeDims / 2)
    private func computeRoPEAngles(batch: Int, start: Int) {
        let pairs = inverseFrequencies.count
        for b in 0 ..< batch {
            for i in 0 ..< pairs {
                // Angles in Double: position · frequency reaches thousands of radians at long contexts.
                let angle = Double(start + b) * inverseFrequencies[i]
                scratch.ropeCos[b * pairs + i] = Float(cos(angle))
                scratch.ropeSin[b * pairs + i] = Float(sin(angle))
            }
        }
    }

    /// xb = rmsnorm(x) ⊙ weight, then quantized into `scratch.quantized`.      (B, d)
    private func normalizeAndQuantize(batch: Int, weight: [Float]) {
        let d = config.embeddingLength
        weight.withUnsafeBufferPointer { weight in
            for b in 0 ..< batch {
                TransformerMath.rmsNorm(
                    scratch.residual + b * d, weight: weight.baseAddress!, epsilon: config.rmsNormEpsilon, count: d,
                    into: scratch.normalized + b * d)
            }
        }
        quantize(scratch.normalized, rows: batch, columns: d)
    }

    /// Quantizes `rows` rows of `columns` floats into `scratch.quantized` (row stride = one Q8_0 row).
    private func quantize(_ source: UnsafeMutablePointer<Float>, rows: Int, columns: Int) {
        Q8Block.quantize(source, count: rows * columns, into: scratch.quantized)
    }

    /// out[b][r] = W[r] · xq[b] for the rows `rows`: matVec for one token, matMul for a batch.
    /// W (rows, n) @ xq (B, n)ᵀ -> out (B, outStride)
    private func product(
        _ w: Q8Matrix, batch: Int, into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        guard !rows.isEmpty else { return }
        if batch == 1 {
            Kernels.matVec(w, scratch.quantized, into: out, rows: rows)
        } else {
            Kernels.matMul(w, scratch.quantized, batch: batch, into: out, outStride: outStride, rows: rows)
        }
    }

    /// What a head of the q/k/v projection is for.
    private enum ProjectionKind {
        case query, key, value
    }

    /// q, k, v = Wq xb + bq, Wk xb + bk, Wv xb + bv; RoPE on q and k; k and v into the cache.
    /// Split across threads by head: the q heads, then the k heads, then the v heads, as one list,
    /// so every thread owns whole heads (RoPE needs a whole head) and the work is balanced.
    private func projectQKV(_ w: LayerWeights, layer: Int, batch: Int, start: Int) {
        let heads = config.headCount
        let kvHeads = config.kvHeadCount
        pool.run { thread, threads in
            let units = ComputePool.slice(heads + 2 * kvHeads, index: thread, count: threads)
            projectHeads(w.query, bias: w.queryBias, into: scratch.query, kind: .query,
                         heads: units.clamped(to: 0 ..< heads), firstUnit: 0,
                         layer: layer, batch: batch, start: start)
            projectHeads(w.key, bias: w.keyBias, into: scratch.key, kind: .key,
                         heads: units.clamped(to: heads ..< heads + kvHeads), firstUnit: heads,
                         layer: layer, batch: batch, start: start)
            projectHeads(w.value, bias: w.valueBias, into: scratch.value, kind: .value,
                         heads: units.clamped(to: heads + kvHeads ..< heads + 2 * kvHeads), firstUnit: heads + kvHeads,
                         layer: layer, batch: batch, start: start)
        }
    }

    /// One thread's share of `projectQKV` for one matrix: the heads `heads` (numbered from `firstUnit`).
    /// W (heads·hd, d) @ xq (B, d)ᵀ -> out (B, heads·hd)
    private func projectHeads(
        _ w: Q8Matrix, bias: [Float]?, into out: UnsafeMutablePointer<Float>, kind: ProjectionKind,
        heads units: Range<Int>, firstUnit: Int, layer: Int, batch: Int, start: Int
    ) {
        guard !units.isEmpty else { return }
        let hd = config.headDimension
        let pairs = config.ropeDimensionCount / 2
        let heads = units.lowerBound - firstUnit ..< units.upperBound - firstUnit
        let width = w.rows
        let rows = heads.lowerBound * hd ..< heads.upperBound * hd
        product(w, batch: batch, into: out, outStride: width, rows: rows)
        for b in 0 ..< batch {
            let row = out + b * width
            if let bias {
                for r in rows { row[r] += bias[r] }
            }
            for head in heads {
                let vector = row + head * hd
                if kind != .value {
                    TransformerMath.rotate(
                        vector, cos: scratch.ropeCos + b * pairs, sin: scratch.ropeSin + b * pairs,
                        pairs: pairs, style: config.ropeStyle)
                }
                switch kind {
                case .query: break
                case .key: cache.storeKey(vector, layer: layer, head: head, position: start + b)
                case .value: (cache.values(layer: layer, head: head) + (start + b) * hd).update(from: vector, count: hd)
                }
            }
        }
    }

    /// a_h = softmax(q_h · K_gᵀ / √hd) V_g over positions 0 ... p of each token (causal), per query head h
    /// with g = h / (H / KV).   q (B, H·hd) -> attention (B, H·hd)
    /// The (head, token) pairs, token-major within a head, are dealt round-robin to the threads: each pair is
    /// computed wholly by one thread (so the result does not depend on the thread count), neighbouring
    /// tokens have nearly equal causal lengths (so the threads get even shares), and a thread's consecutive
    /// pairs read the same head's K and V while they are still in cache.
    private func attend(layer: Int, batch: Int, start: Int) {
        let hd = config.headDimension
        let heads = config.headCount
        let group = heads / config.kvHeadCount
        let queryLength = config.queryLength
        let scale = 1 / Float(hd).squareRoot()
        let scoresStride = scratch.scoresStride
        pool.run { thread, threads in
            let scores = scratch.scores + thread * scoresStride
            var unit = thread
            while unit < heads * batch {
                let (head, b) = unit.quotientAndRemainder(dividingBy: batch)
                let length = start + b + 1
                let query = scratch.query + b * queryLength + head * hd
                let out = scratch.attention + b * queryLength + head * hd
                TransformerMath.scores(
                    query: query, keyBlocks: cache.keys(layer: layer, head: head / group), count: length,
                    dimension: hd, scale: scale, into: scores)
                let total = TransformerMath.exponentiate(scores, count: length)
                TransformerMath.weightedSum(
                    cache.values(layer: layer, head: head / group), weights: scores, count: length, dimension: hd,
                    into: out)
                let inverse = 1 / total
                for i in 0 ..< hd { out[i] *= inverse }
                unit += threads
            }
        }
    }

    /// x += W xq, the residual connection after Wo and after W2. Split by output row.
    /// W (d, n) @ xq (B, n)ᵀ -> (B, d)
    private func projectAndAccumulate(_ w: Q8Matrix, batch: Int) {
        let d = config.embeddingLength
        pool.run { thread, threads in
            let rows = ComputePool.slice(d, index: thread, count: threads, granularity: 4)
            product(w, batch: batch, into: scratch.projected, outStride: d, rows: rows)
            for b in 0 ..< batch {
                for r in rows { scratch.residual[b * d + r] += scratch.projected[b * d + r] }
            }
        }
    }

    /// gate = silu(W1 xb) ⊙ (W3 xb), both products and the product of the branches over the same rows.
    /// W1, W3 (f, d) @ xq (B, d)ᵀ -> (B, f)
    private func gatedFeedForward(_ w: LayerWeights, batch: Int) {
        let f = config.feedForwardLength
        pool.run { thread, threads in
            let rows = ComputePool.slice(f, index: thread, count: threads, granularity: 4)
            product(w.gate, batch: batch, into: scratch.gate, outStride: f, rows: rows)
            product(w.up, batch: batch, into: scratch.up, outStride: f, rows: rows)
            for b in 0 ..< batch {
                let i = b * f + rows.lowerBound
                TransformerMath.siluMultiply(scratch.gate + i, scratch.up + i, count: rows.count)
            }
        }
    }

    /// logits[b] = Wout (rmsnorm(x[b]) ⊙ w_out_norm) for the batch rows `rows`, split by vocabulary row.
    /// Wout (vocab, d) @ xq (n, d)ᵀ -> out (n, vocab)
    private func computeLogits(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let d = config.embeddingLength
        weights.outputNorm.withUnsafeBufferPointer { weight in
            for (i, b) in rows.enumerated() {
                TransformerMath.rmsNorm(
                    scratch.residual + b * d, weight: weight.baseAddress!, epsilon: config.rmsNormEpsilon, count: d,
                    into: scratch.normalized + i * d)
            }
        }
        quantize(scratch.normalized, rows: rows.count, columns: d)
        let vocab = config.vocabularySize
        let output = weights.output
        pool.run { thread, threads in
            let slice = ComputePool.slice(vocab, index: thread, count: threads, granularity: 4)
            product(output, batch: rows.count, into: out, outStride: vocab, rows: slice)
        }
    }

    /// Grows the logits buffer to hold `rows` rows (the only allocation after `init`, and only when a
    /// call asks for more rows of logits than any call before).
    private func reserveLogitRows(_ rows: Int) {
        guard rows > logitsCapacityRows else { return }
        logits.deallocate()
        logits = .allocate(capacity: rows * config.vocabularySize)
        logitsCapacityRows = rows
    }
}
