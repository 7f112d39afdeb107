/// Which dimensions of a head RoPE rotates together (pair `i` of `ropeDimensions / 2` turns by
/// `position * base^(-2i / ropeDimensions)`).
public enum RoPEStyle: Sendable, Equatable {
    /// Pair `i` is dimensions `(2i, 2i + 1)`: ggml's "normal" mode, used by GGUF `llama`.
    case adjacentPairs
    /// Pair `i` is dimensions `(i, i + ropeDimensions / 2)`: GPT-NeoX mode, used by `qwen2`.
    case halves
}
