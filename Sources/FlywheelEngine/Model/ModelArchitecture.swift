/// The transformer families the engine runs, named as in `general.architecture`.
///
/// Both are pre-norm decoders with RMSNorm, grouped-query attention, RoPE and a SwiGLU feed-forward;
/// they differ in the RoPE pairing (see `ropeStyle`) and in qwen2's q/k/v biases (loaded whenever present).
public enum ModelArchitecture: String, Sendable, CaseIterable {
    case llama
    case qwen2

    /// The accepted `general.architecture` values, for error messages.
    public static var supportedNames: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// How RoPE pairs the dimensions of a head.
    ///
    /// llama.cpp's converter permutes the q/k rows of `llama` models so that rotated pairs are adjacent,
    /// and rotates qwen2 (written unpermuted) in halves the way Hugging Face's `rotate_half` does.
    public var ropeStyle: RoPEStyle {
        switch self {
        case .llama: return .adjacentPairs
        case .qwen2: return .halves
        }
    }
}
