import FlywheelKernels

/// A loaded `llama`- or `qwen2`-family model: its configuration and weights, immutable and shared.
///
/// Sendable: everything is read-only after `init`. One model serves any number of
/// `InferenceContext`s (one per sequence); the GGUF mapping stays open as long as the model lives.
public final class LlamaModel: Sendable {
    /// Hyper-parameters from the metadata.
    public let config: ModelConfig
    /// Every tensor, ready for the kernels.
    public let weights: ModelWeights
    /// The file the weights come from (metadata such as the tokenizer lives here too).
    public let file: GGUFFile

    /// Builds the model from an opened GGUF file, its matrices in `layout` where their shapes allow (by default
    /// the one the active kernels read fastest). Throws `ModelError`.
    public init(file: GGUFFile, layout: Q8Layout = Q8Matrix.preferredLayout) throws {
        let config = try ModelConfig(file: file)
        self.config = config
        self.weights = try ModelWeights(file: file, config: config, layout: layout)
        self.file = file
    }

    /// Maps the GGUF file at `path` and builds the model. Throws `GGUFError` or `ModelError`.
    public convenience init(path: String, layout: Q8Layout = Q8Matrix.preferredLayout) throws {
        try self.init(file: GGUFFile(path: path), layout: layout)
    }
}
