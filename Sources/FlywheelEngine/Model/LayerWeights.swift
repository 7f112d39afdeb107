import FlywheelKernels

/// The weights of one transformer block. Matrices are (rows = outputs, columns = inputs), Q8_0.
public struct LayerWeights: Sendable {
    /// RMSNorm weight before attention (d).
    public let attentionNorm: [Float]
    /// Wq (headCount * headDimension, d).
    public let query: Q8Matrix
    /// Wk (kvHeadCount * headDimension, d).
    public let key: Q8Matrix
    /// Wv (kvHeadCount * headDimension, d).
    public let value: Q8Matrix
    /// bq (headCount * headDimension), added after Wq when the file has it (qwen2 does).
    public let queryBias: [Float]?
    /// bk (kvHeadCount * headDimension), added after Wk when present.
    public let keyBias: [Float]?
    /// bv (kvHeadCount * headDimension), added after Wv when present.
    public let valueBias: [Float]?
    /// Wo (d, headCount * headDimension).
    public let attentionOutput: Q8Matrix
    /// RMSNorm weight before the feed-forward block (d).
    public let feedForwardNorm: [Float]
    /// W1 (f, d): the gate, passed through SiLU.
    public let gate: Q8Matrix
    /// W3 (f, d): the linear branch multiplied with the gate.
    public let up: Q8Matrix
    /// W2 (d, f).
    public let down: Q8Matrix
}
