import FlywheelKernels

/// The activations of one batch of up to `batchCapacity` tokens, allocated once per context.
/// Shapes are (batch, width), row-major; `B` below is `batchCapacity`.
///
/// Owned by one `InferenceContext`; pool threads write disjoint rows or heads of them.
final class ScratchBuffers {
    /// x (B, d): the residual stream.
    let residual: UnsafeMutablePointer<Float>
    /// xb (B, d): the normalized residual, input of the projections.
    let normalized: UnsafeMutablePointer<Float>
    /// Q8_0 rows (B, widest input): the activations a product is reading, quantized.
    let quantized: UnsafeMutableRawPointer
    /// q (B, headCount·headDimension)
    let query: UnsafeMutablePointer<Float>
    /// k (B, kvHeadCount·headDimension)
    let key: UnsafeMutablePointer<Float>
    /// v (B, kvHeadCount·headDimension)
    let value: UnsafeMutablePointer<Float>
    /// Attention output, heads concatenated (B, headCount·headDimension).
    let attention: UnsafeMutablePointer<Float>
    /// Output of Wo or W2 before it is added to the residual (B, d).
    let projected: UnsafeMutablePointer<Float>
    /// W1 xb, the gate branch of the feed-forward block (B, f); ends up holding silu(gate)·up.
    let gate: UnsafeMutablePointer<Float>
    /// W3 xb, the linear branch (B, f).
    let up: UnsafeMutablePointer<Float>
    /// Tokens per attention tile: the queries that share each chunk of K and V read from the cache.
    let attentionTile: Int
    /// Attention scores, `attentionTile` rows per pool thread (threads, attentionTile, scoresStride).
    let scores: UnsafeMutablePointer<Float>
    /// Softmax denominators of one attention tile per pool thread (threads, attentionTotalsStride).
    let attentionTotals: UnsafeMutablePointer<Float>
    /// Floats per thread in `attentionTotals`: a tile, at least a cache line so threads never share one.
    let attentionTotalsStride: Int
    /// Floats per row of `scores`: the context capacity rounded up to whole key blocks, plus padding so
    /// two threads' rows never share a cache line.
    let scoresStride: Int
    /// cos of every RoPE angle of the batch (B, ropeDimensionCount / 2).
    let ropeCos: UnsafeMutablePointer<Float>
    /// sin of every RoPE angle of the batch (B, ropeDimensionCount / 2).
    let ropeSin: UnsafeMutablePointer<Float>

    private let allocations: [UnsafeMutableRawPointer]

    init(config: ModelConfig, batchCapacity b: Int, capacity: Int, threadCount: Int, attentionTile: Int) {
        var allocations: [UnsafeMutableRawPointer] = []
        func floats(_ count: Int) -> UnsafeMutablePointer<Float> {
            let memory = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * 4, alignment: 64)
            allocations.append(memory)
            return memory.bindMemory(to: Float.self, capacity: max(1, count))
        }
        let d = config.embeddingLength
        let widest = max(d, config.queryLength, config.feedForwardLength)
        residual = floats(b * d)
        normalized = floats(b * d)
        let quantizedBytes = b * Q8Block.rowByteCount(widest)
        quantized = UnsafeMutableRawPointer.allocate(byteCount: quantizedBytes, alignment: 64)
        allocations.append(quantized)
        query = floats(b * config.queryLength)
        key = floats(b * config.keyValueLength)
        value = floats(b * config.keyValueLength)
        attention = floats(b * config.queryLength)
        projected = floats(b * d)
        gate = floats(b * config.feedForwardLength)
        up = floats(b * config.feedForwardLength)
        scoresStride = (capacity + 7) / 8 * 8 + 16
        self.attentionTile = attentionTile
        scores = floats(threadCount * attentionTile * scoresStride)
        attentionTotalsStride = (attentionTile + 15) / 16 * 16
        attentionTotals = floats(threadCount * attentionTotalsStride)
        ropeCos = floats(b * config.ropeDimensionCount / 2)
        ropeSin = floats(b * config.ropeDimensionCount / 2)
        self.allocations = allocations
    }

    deinit {
        for memory in allocations { memory.deallocate() }
    }
}
