#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
#if arch(x86_64)
import FlywheelEngineAVX2
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
    /// Whether attention runs on `AttentionKernelsAVX2` (the CPU has AVX2 and FMA, and the kernels'
    /// `FLYWHEEL_KERNELS` switch does not force the portable path). Every path above portable
    /// (AVX2, AVX-512 VNNI) implies AVX2, FMA and F16C.
    private let useAVX2 = KernelPath.active != .portable
    /// Cache positions per step of an attention tile (see `attend`).
    private let attentionChunk: Int
    private var logits: UnsafeMutablePointer<Float>
    private var logitsCapacityRows: Int

    /// Makes a context for up to `maxTokens` positions (at most the model's context length), with its KV
    /// cache (`layers · kvHeads · maxTokens · headDimension` floats, twice) and scratch for `batchCapacity`
    /// tokens. `pool` does the matrix work; contexts may share a pool only if they never evaluate at the
    /// same time (`ComputePool.run` takes one caller at a time). Throws `InferenceError.invalidCapacity`.
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
        attentionChunk: Int
    ) throws {
        precondition(attentionTile >= 1 && attentionChunk >= KVCache.blockLength
                     && attentionChunk % KVCache.blockLength == 0, "attention blocking")
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
            config: config, batchCapacity: self.batchCapacity, capacity: maxTokens, threadCount: pool.threadCount,
            attentionTile: attentionTile)
        self.attentionChunk = attentionChunk
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
        try check(tokens)
        let count = tokens.count
        if allLogits { reserveLogitRows(count) }
        forwardInBatches(tokens) { batch, done in
            if allLogits {
                computeLogits(rows: 0 ..< batch, into: logits + done * config.vocabularySize)
            } else if done + batch == count {
                computeLogits(rows: batch - 1 ..< batch, into: logits)
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
        let d = config.embeddingLength
        var sum = [Double](repeating: 0, count: d)
        forwardInBatches(tokens) { batch, _ in
            for b in 0 ..< batch {
                for i in 0 ..< d { sum[i] += Double(scratch.residual[b * d + i]) }
            }
        }
        let norm = sum.reduce(0) { $0 + $1 * $1 }.squareRoot()
        reset()
        return sum.map { Float(norm > 0 ? $0 / norm : 0) }
    }

    /// Throws when `tokens` cannot be appended: none, more than the context has room for, or out of range.
    private func check(_ tokens: some Collection<Int32>) throws {
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
    /// has run through the layers (its outputs in `scratch.residual`, `done` tokens before it).
    private func forwardInBatches(_ tokens: some Collection<Int32>, _ afterBatch: (_ batch: Int, _ done: Int) -> Void) {
        let count = tokens.count
        var index = tokens.startIndex
        var done = 0
        while done < count {
            let batch = min(batchCapacity, count - done)
            for b in 0 ..< batch {
                weights.embed(token: Int(tokens[index]), into: scratch.residual + b * config.embeddingLength)
                tokens.formIndex(after: &index)
            }
            forward(batch: batch, start: position)
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
    ///
    /// Work units are a head and a tile of up to `scratch.attentionTile` (8) consecutive tokens, dealt
    /// to the threads back and forth (neighbouring tiles cost nearly the same, so the shares are even). A
    /// tile walks the cache in chunks of `attentionChunk` (64) positions and runs all its queries over a
    /// chunk while the chunk's K (then V) is in L1 (64 keys and values of 64 dimensions are 32 KB),
    /// instead of streaming the whole head from L2 once per query. Every (head, token) is still computed
    /// wholly by one thread, in the same order whatever the tiling or the thread count: each score is its
    /// own sum, and the V sum runs over t in order, carried across chunks.
    private func attend(layer: Int, batch: Int, start: Int) {
        let heads = config.headCount
        let scoresStride = scratch.scoresStride
        let tile = scratch.attentionTile
        let tiles = (batch + tile - 1) / tile
        pool.run { thread, threads in
            let scores = scratch.scores + thread * tile * scoresStride
            let totals = scratch.attentionTotals + thread * scratch.attentionTotalsStride
            // Round r deals units r·T ..< (r + 1)·T, forwards in even rounds and backwards in odd ones, so
            // no thread always gets the later (longer) tile of a pair.
            var round = 0
            while round * threads < heads * tiles {
                defer { round += 1 }
                let unit = round * threads + (round % 2 == 0 ? thread : threads - 1 - thread)
                guard unit < heads * tiles else { continue }
                let (head, tileIndex) = unit.quotientAndRemainder(dividingBy: tiles)
                attendTile(
                    layer: layer, head: head, tokens: tileIndex * tile ..< min(batch, (tileIndex + 1) * tile),
                    start: start, scores: scores, totals: totals)
            }
        }
    }

    /// `attend` for one head and the tokens `tokens` of the batch: scores of every query, chunk by chunk
    /// of the cache; the exponentials; then Σ_t e_t V_t of every query, chunk by chunk; then the division
    /// by Σ_t e_t. `scores` holds a row of `scratch.scoresStride` per token, `totals` one float per token.
    private func attendTile(
        layer: Int, head: Int, tokens: Range<Int>, start: Int, scores: UnsafeMutablePointer<Float>,
        totals: UnsafeMutablePointer<Float>
    ) {
        let hd = config.headDimension
        let group = config.headCount / config.kvHeadCount
        let queryLength = config.queryLength
        let scale = 1 / Float(hd).squareRoot()
        let scoresStride = scratch.scoresStride
        let chunk = attentionChunk
        let keys = cache.keys(layer: layer, head: head / group)
        let values = cache.values(layer: layer, head: head / group)
        let longest = start + tokens.upperBound
        var from = 0
        while from < longest {
            for b in tokens where from < start + b + 1 {
                computeScores(
                    query: scratch.query + b * queryLength + head * hd, keys: keys + from * hd,
                    count: min(chunk, start + b + 1 - from), scale: scale,
                    into: scores + (b - tokens.lowerBound) * scoresStride + from)
            }
            from += chunk
        }
        for b in tokens {
            totals[b - tokens.lowerBound] = exponentiate(
                scores + (b - tokens.lowerBound) * scoresStride, count: start + b + 1)
        }
        from = 0
        while from < longest {
            for b in tokens where from < start + b + 1 {
                accumulateValues(
                    values + from * hd, weights: scores + (b - tokens.lowerBound) * scoresStride + from,
                    count: min(chunk, start + b + 1 - from), accumulating: from > 0,
                    into: scratch.attention + b * queryLength + head * hd)
            }
            from += chunk
        }
        for b in tokens {
            let out = scratch.attention + b * queryLength + head * hd
            let inverse = 1 / totals[b - tokens.lowerBound]
            for i in 0 ..< hd { out[i] *= inverse }
        }
    }

    /// scores[t] = scale · (query · key t), t < count; `keys` is the first key block.
    @inline(__always)
    private func computeScores(
        query: UnsafePointer<Float>, keys: UnsafePointer<Float>, count: Int, scale: Float,
        into scores: UnsafeMutablePointer<Float>
    ) {
        #if arch(x86_64)
        if useAVX2 {
            AttentionKernelsAVX2.scores(
                query: query, keyBlocks: keys, count: count, dimension: config.headDimension, scale: scale,
                into: scores)
            return
        }
        #endif
        TransformerMath.scores(
            query: query, keyBlocks: keys, count: count, dimension: config.headDimension, scale: scale, into: scores)
    }

    /// scores = exp(scores - max); returns their sum.
    @inline(__always)
    private func exponentiate(_ scores: UnsafeMutablePointer<Float>, count: Int) -> Float {
        #if arch(x86_64)
        if useAVX2 { return AttentionKernelsAVX2.exponentiate(scores, count: count) }
        #endif
        return TransformerMath.exponentiate(scores, count: count)
    }

    /// out (+)= Σ_t weights[t] · values[t], t < count.
    @inline(__always)
    private func accumulateValues(
        _ values: UnsafePointer<Float>, weights: UnsafePointer<Float>, count: Int, accumulating: Bool,
        into out: UnsafeMutablePointer<Float>
    ) {
        #if arch(x86_64)
        if useAVX2 {
            AttentionKernelsAVX2.weightedSum(
                values, weights: weights, count: count, dimension: config.headDimension, accumulating: accumulating,
                into: out)
            return
        }
        #endif
        TransformerMath.weightedSum(
            values, weights: weights, count: count, dimension: config.headDimension, accumulating: accumulating,
            into: out)
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
