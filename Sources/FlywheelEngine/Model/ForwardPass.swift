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

/// The transformer's forward pass over one batch of up to `rowCapacity` token rows, which may belong to
/// several sequences: each `Segment` is a run of consecutive rows of one sequence (its KV cache and the
/// position of its first row). Every matrix product runs once for all rows, so a weight is read once per
/// step however many sequences decode together (continuous batching); attention is per row, over its own
/// sequence's cache.
///
/// The pass for B rows (d = embedding, f = feed-forward):
/// ```
/// x = E[tokens]                                                (B, d)
/// for each layer:
///     xb = rmsnorm(x) ⊙ w_attn_norm
///     q, k, v = Wq xb + bq, Wk xb + bk, Wv xb + bv; rope(q, k)  (B, H·hd), (B, KV·hd)
///     K/V cache of each row's sequence at its position = k, v
///     a_h = softmax(q_h · K_g[0 ... pos]ᵀ / √hd) V_g            g = h / (H / KV), causal per sequence
///     x += Wo a                                                (B, d)
///     xb = rmsnorm(x) ⊙ w_ffn_norm
///     x += W2 (silu(W1 xb) ⊙ W3 xb)                            (B, f) -> (B, d)
/// logits = Wout (rmsnorm(x) ⊙ w_out_norm)                      (rows asked for, vocab)
/// ```
/// One row runs through `Kernels.matVec`, more through `Kernels.matMul`; the two sum every output in the
/// same order, and attention computes each (head, row) wholly on one thread in a fixed order, so a row's
/// results do not depend on which other rows share its batch. Each layer is five `pool.run`s: q/k/v (with
/// RoPE and the cache write), attention, Wo (with the residual add), W1/W3 (with SiLU and the product), W2
/// (with the residual add). RMSNorm and activation quantization run on the calling thread between them.
///
/// Not thread-safe: one thread at a time runs a pass (it spreads the work over `pool` itself).
final class ForwardPass {
    /// A run of consecutive batch rows of one sequence: rows `rows` sit at positions `start ..< start + rows.count`
    /// of `cache`.
    struct Segment {
        let cache: KVCache
        let start: Int
        let rows: Range<Int>
    }

    let config: ModelConfig
    let weights: ModelWeights
    let pool: ComputePool
    /// The most rows one pass takes.
    let rowCapacity: Int
    /// The most positions a sequence in a pass may have (the scores scratch is sized for it).
    let maxPositions: Int
    private let scratch: ScratchBuffers
    /// The angle per position of every RoPE pair i: base^(-2i / ropeDimensionCount), scaled.
    private let inverseFrequencies: [Double]
    /// Whether attention runs on `AttentionKernelsAVX2` (the CPU has AVX2 and FMA, and the kernels'
    /// `FLYWHEEL_KERNELS` switch does not force the portable path). Every path above portable
    /// (AVX2, AVX-512 VNNI) implies AVX2, FMA and F16C.
    private let useAVX2 = KernelPath.active != .portable
    /// Cache positions per step of an attention tile (see `attend`).
    private let attentionChunk: Int
    /// The segments of the pass being run.
    private var segments: [Segment] = []
    /// Per batch row: its segment and its position.
    private let rowSegment: UnsafeMutablePointer<Int>
    private let rowPosition: UnsafeMutablePointer<Int>
    /// Attention work: tiles of up to `scratch.attentionTile` consecutive rows of one segment.
    private var tiles: [(segment: Int, rows: Range<Int>)] = []

    init(model: LlamaModel, pool: ComputePool, rowCapacity: Int, maxPositions: Int, attentionTile: Int,
         attentionChunk: Int) {
        precondition(attentionTile >= 1 && attentionChunk >= KVCache.blockLength
                     && attentionChunk % KVCache.blockLength == 0, "attention blocking")
        precondition(rowCapacity >= 1 && maxPositions >= 1, "forward pass sizes")
        let config = model.config
        self.config = config
        self.weights = model.weights
        self.pool = pool
        self.rowCapacity = rowCapacity
        self.maxPositions = maxPositions
        self.scratch = ScratchBuffers(
            config: config, batchCapacity: rowCapacity, capacity: maxPositions, threadCount: pool.threadCount,
            attentionTile: attentionTile)
        self.attentionChunk = attentionChunk
        // Pair i turns by position / linearScale · base^(-2i / ropeDims) / factor[i].
        let ropeDimensions = Double(config.ropeDimensionCount)
        let factors = model.weights.ropeFrequencyFactors
        self.inverseFrequencies = (0 ..< config.ropeDimensionCount / 2).map { i in
            pow(config.ropeFrequencyBase, -2 * Double(i) / ropeDimensions)
                / config.ropeLinearScale / Double(factors?[i] ?? 1)
        }
        rowSegment = .allocate(capacity: rowCapacity)
        rowPosition = .allocate(capacity: rowCapacity)
    }

    deinit {
        rowSegment.deallocate()
        rowPosition.deallocate()
    }

    /// Puts the embedding of `token` (in range) into batch row `row`.
    func embed(_ token: Int32, row: Int) {
        weights.embed(token: Int(token), into: scratch.residual + row * config.embeddingLength)
    }

    /// The residual stream of batch row `row` after a pass: the last layer's output (d floats).
    func output(row: Int) -> UnsafePointer<Float> {
        UnsafePointer(scratch.residual + row * config.embeddingLength)
    }

    /// Runs every layer over the embedded rows `0 ..< rows`, which `segments` cover in order, writing each
    /// row's keys and values into its segment's cache. Positions must fit the caches and `maxPositions`.
    func run(_ segments: [Segment], rows: Int) {
        precondition(rows >= 1 && rows <= rowCapacity, "rows of a pass")
        self.segments = segments
        tiles.removeAll(keepingCapacity: true)
        var covered = 0
        for (index, segment) in segments.enumerated() {
            precondition(segment.rows.lowerBound == covered && segment.start + segment.rows.count <= min(segment.cache.capacity, maxPositions),
                         "segments cover the rows in order and fit their caches")
            covered = segment.rows.upperBound
            for row in segment.rows {
                rowSegment[row] = index
                rowPosition[row] = segment.start + row - segment.rows.lowerBound
            }
            var from = segment.rows.lowerBound
            while from < segment.rows.upperBound {
                let to = min(segment.rows.upperBound, from + scratch.attentionTile)
                tiles.append((index, from ..< to))
                from = to
            }
        }
        precondition(covered == rows, "segments cover the rows")
        computeRoPEAngles(rows: rows)
        for layer in 0 ..< config.layerCount {
            let w = weights.layers[layer]
            normalizeAndQuantize(batch: rows, weight: w.attentionNorm)
            projectQKV(w, layer: layer, batch: rows)
            attend(layer: layer)
            quantize(scratch.attention, rows: rows, columns: config.queryLength)
            projectAndAccumulate(w.attentionOutput, batch: rows)
            normalizeAndQuantize(batch: rows, weight: w.feedForwardNorm)
            gatedFeedForward(w, batch: rows)
            quantize(scratch.gate, rows: rows, columns: config.feedForwardLength)
            projectAndAccumulate(w.down, batch: rows)
        }
        self.segments.removeAll(keepingCapacity: true)
    }

    /// cos/sin of position · inverseFrequency[i] for every row of the batch.   (B, ropeDims / 2)
    private func computeRoPEAngles(rows: Int) {
        let pairs = inverseFrequencies.count
        for b in 0 ..< rows {
            for i in 0 ..< pairs {
                // Angles in Double: position · frequency reaches thousands of radians at long contexts.
                let angle = Double(rowPosition[b]) * inverseFrequencies[i]
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

    /// q, k, v = Wq xb + bq, Wk xb + bk, Wv xb + bv; RoPE on q and k; k and v into the caches.
    /// Split across threads by head: the q heads, then the k heads, then the v heads, as one list,
    /// so every thread owns whole heads (RoPE needs a whole head) and the work is balanced.
    private func projectQKV(_ w: LayerWeights, layer: Int, batch: Int) {
        let heads = config.headCount
        let kvHeads = config.kvHeadCount
        pool.run { thread, threads in
            let units = ComputePool.slice(heads + 2 * kvHeads, index: thread, count: threads)
            projectHeads(w.query, bias: w.queryBias, into: scratch.query, kind: .query,
                         heads: units.clamped(to: 0 ..< heads), firstUnit: 0, layer: layer, batch: batch)
            projectHeads(w.key, bias: w.keyBias, into: scratch.key, kind: .key,
                         heads: units.clamped(to: heads ..< heads + kvHeads), firstUnit: heads, layer: layer, batch: batch)
            projectHeads(w.value, bias: w.valueBias, into: scratch.value, kind: .value,
                         heads: units.clamped(to: heads + kvHeads ..< heads + 2 * kvHeads), firstUnit: heads + kvHeads,
                         layer: layer, batch: batch)
        }
    }

    /// One thread's share of `projectQKV` for one matrix: the heads `heads` (numbered from `firstUnit`).
    /// W (heads·hd, d) @ xq (B, d)ᵀ -> out (B, heads·hd)
    private func projectHeads(
        _ w: Q8Matrix, bias: [Float]?, into out: UnsafeMutablePointer<Float>, kind: ProjectionKind,
        heads units: Range<Int>, firstUnit: Int, layer: Int, batch: Int
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
            let cache = segments[rowSegment[b]].cache
            let position = rowPosition[b]
            for head in heads {
                let vector = row + head * hd
                if kind != .value {
                    TransformerMath.rotate(
                        vector, cos: scratch.ropeCos + b * pairs, sin: scratch.ropeSin + b * pairs,
                        pairs: pairs, style: config.ropeStyle)
                }
                switch kind {
                case .query: break
                case .key: cache.storeKey(vector, layer: layer, head: head, position: position)
                case .value: cache.storeValue(vector, layer: layer, head: head, position: position)
                }
            }
        }
    }

    /// a_h = softmax(q_h · K_gᵀ / √hd) V_g over positions 0 ... p of each row's own sequence (causal), per
    /// query head h with g = h / (H / KV).   q (B, H·hd) -> attention (B, H·hd)
    ///
    /// Work units are a head and a tile of up to `scratch.attentionTile` (8) consecutive rows of one
    /// segment, dealt to the threads back and forth (neighbouring tiles cost nearly the same, so the shares
    /// are even). A tile walks its cache in chunks of `attentionChunk` (64) positions and runs all its
    /// queries over a chunk while the chunk's K (then V) is in L1 (64 keys and values of 64 dimensions are
    /// 32 KB), instead of streaming the whole head from L2 once per query. Every (head, row) is still
    /// computed wholly by one thread, in the same order whatever the tiling, the thread count or the other
    /// rows of the batch: each score is its own sum, and the V sum runs over t in order, carried across chunks.
    private func attend(layer: Int) {
        let heads = config.headCount
        let scoresStride = scratch.scoresStride
        let tile = scratch.attentionTile
        let tileCount = tiles.count
        pool.run { thread, threads in
            let scores = scratch.scores + thread * tile * scoresStride
            let totals = scratch.attentionTotals + thread * scratch.attentionTotalsStride
            // Round r deals units r·T ..< (r + 1)·T, forwards in even rounds and backwards in odd ones, so
            // no thread always gets the later (longer) tile of a pair.
            var round = 0
            while round * threads < heads * tileCount {
                defer { round += 1 }
                let unit = round * threads + (round % 2 == 0 ? thread : threads - 1 - thread)
                guard unit < heads * tileCount else { continue }
                let (head, tileIndex) = unit.quotientAndRemainder(dividingBy: tileCount)
                let (segmentIndex, rows) = tiles[tileIndex]
                let segment = segments[segmentIndex]
                attendTile(
                    layer: layer, head: head, cache: segment.cache, tokens: rows,
                    start: segment.start - segment.rows.lowerBound, scores: scores, totals: totals)
            }
        }
    }

    /// `attend` for one head and the rows `tokens` of one segment, row b at position `start + b`: scores of
    /// every query, chunk by chunk of the cache; the exponentials; then Σ_t e_t V_t of every query, chunk by
    /// chunk; then the division by Σ_t e_t. `scores` holds a row of `scratch.scoresStride` per token,
    /// `totals` one float per token.
    private func attendTile(
        layer: Int, head: Int, cache: KVCache, tokens: Range<Int>, start: Int, scores: UnsafeMutablePointer<Float>,
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
        query: UnsafePointer<Float>, keys: UnsafePointer<Float16>, count: Int, scale: Float,
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
        _ values: UnsafePointer<Float16>, weights: UnsafePointer<Float>, count: Int, accumulating: Bool,
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
        pool.run(pieces: d, granularity: 4) { rows in
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
        pool.run(pieces: f, granularity: 4) { rows in
            product(w.gate, batch: batch, into: scratch.gate, outStride: f, rows: rows)
            product(w.up, batch: batch, into: scratch.up, outStride: f, rows: rows)
            for b in 0 ..< batch {
                let i = b * f + rows.lowerBound
                TransformerMath.siluMultiply(scratch.gate + i, scratch.up + i, count: rows.count)
            }
        }
    }

    /// logits[i] = Wout (rmsnorm(x[rows[i]]) ⊙ w_out_norm) for the batch rows `rows` (in that order), split
    /// by vocabulary row.   Wout (vocab, d) @ xq (n, d)ᵀ -> out (n, vocab)
    func computeLogits(rows: some Collection<Int>, into out: UnsafeMutablePointer<Float>) {
        let d = config.embeddingLength
        let count = rows.count
        guard count > 0 else { return }
        precondition(count <= rowCapacity, "logit rows")
        weights.outputNorm.withUnsafeBufferPointer { weight in
            for (i, b) in rows.enumerated() {
                TransformerMath.rmsNorm(
                    scratch.residual + b * d, weight: weight.baseAddress!, epsilon: config.rmsNormEpsilon, count: d,
                    into: scratch.normalized + i * d)
            }
        }
        quantize(scratch.normalized, rows: count, columns: d)
        let vocab = config.vocabularySize
        let output = weights.output
        pool.run(pieces: vocab, granularity: 4) { slice in
            product(output, batch: count, into: out, outStride: vocab, rows: slice)
        }
    }
}
