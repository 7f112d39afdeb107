/// The hyper-parameters of a model, read from GGUF metadata (`{arch}.*` keys) and the embedding's shape.
public struct ModelConfig: Sendable, Equatable {
    /// `general.architecture`.
    public let architecture: ModelArchitecture
    /// `d`: the width of the residual stream (`{arch}.embedding_length`).
    public let embeddingLength: Int
    /// Number of transformer blocks (`{arch}.block_count`).
    public let layerCount: Int
    /// Query heads (`{arch}.attention.head_count`).
    public let headCount: Int
    /// Key/value heads (`{arch}.attention.head_count_kv`, default `headCount`); each serves
    /// `headCount / kvHeadCount` query heads.
    public let kvHeadCount: Int
    /// Elements per head (`{arch}.attention.key_length`, default `embeddingLength / headCount`).
    public let headDimension: Int
    /// Hidden width of the feed-forward block (`{arch}.feed_forward_length`).
    public let feedForwardLength: Int
    /// Rows of the token embedding.
    public let vocabularySize: Int
    /// The longest sequence the model was trained for (`{arch}.context_length`).
    public let contextLength: Int
    /// RMSNorm epsilon (`{arch}.attention.layer_norm_rms_epsilon`).
    public let rmsNormEpsilon: Float
    /// RoPE base frequency (`{arch}.rope.freq_base`, default 10000).
    public let ropeFrequencyBase: Double
    /// Linear RoPE scaling (`{arch}.rope.scaling.type` "linear" with `rope.scaling.factor`): positions are
    /// divided by it. 1 without scaling.
    public let ropeLinearScale: Double
    /// Leading dimensions of each head that RoPE rotates (`{arch}.rope.dimension_count`, default `headDimension`).
    public let ropeDimensionCount: Int

    /// `headCount * headDimension`: the width of the query projection and of the attention output.
    public var queryLength: Int { headCount * headDimension }
    /// `kvHeadCount * headDimension`: the width of the key and value projections.
    public var keyValueLength: Int { kvHeadCount * headDimension }
    /// How RoPE pairs dimensions for this architecture.
    public var ropeStyle: RoPEStyle { architecture.ropeStyle }

    /// The largest value any size or count key may have.
    public static let maximumDimension = 1 << 24

    /// Reads and checks the configuration. Throws `ModelError`.
    public init(file: GGUFFile) throws {
        guard let archName = file.string("general.architecture") else {
            throw ModelError.missingMetadata(key: "general.architecture")
        }
        guard let architecture = ModelArchitecture(rawValue: archName) else {
            throw ModelError.unsupportedArchitecture(archName)
        }
        let prefix = archName + "."
        func integer(_ key: String, default fallback: Int? = nil) throws -> Int {
            let fullKey = prefix + key
            guard let value = file.metadata[fullKey] else {
                if let fallback { return fallback }
                throw ModelError.missingMetadata(key: fullKey)
            }
            guard let int = value.intValue else {
                throw ModelError.invalidMetadata(key: fullKey, reason: "is \(value.type), expected an integer")
            }
            guard int > 0 else { throw ModelError.invalidMetadata(key: fullKey, reason: "is \(int), expected > 0") }
            // A cap far above any real model keeps every product of two dimensions inside Int.
            guard int <= Self.maximumDimension else {
                throw ModelError.invalidMetadata(key: fullKey, reason: "is \(int), larger than \(Self.maximumDimension)")
            }
            return int
        }
        func real(_ key: String, default fallback: Double? = nil) throws -> Double {
            let fullKey = prefix + key
            guard let value = file.metadata[fullKey] else {
                if let fallback { return fallback }
                throw ModelError.missingMetadata(key: fullKey)
            }
            guard let double = value.doubleValue else {
                throw ModelError.invalidMetadata(key: fullKey, reason: "is \(value.type), expected a float")
            }
            guard double > 0, double.isFinite else {
                throw ModelError.invalidMetadata(key: fullKey, reason: "is \(double), expected a positive number")
            }
            return double
        }

        let embeddingLength = try integer("embedding_length")
        let headCount = try integer("attention.head_count")
        let kvHeadCount = try integer("attention.head_count_kv", default: headCount)
        guard embeddingLength % headCount == 0 || file.metadata[prefix + "attention.key_length"] != nil else {
            throw ModelError.inconsistentDimensions(
                "embedding_length \(embeddingLength) is not a multiple of head_count \(headCount)")
        }
        let headDimension = try integer("attention.key_length", default: embeddingLength / headCount)
        let valueLength = try integer("attention.value_length", default: headDimension)
        guard valueLength == headDimension else {
            throw ModelError.inconsistentDimensions(
                "attention.value_length \(valueLength) differs from key_length \(headDimension)")
        }
        guard headCount % kvHeadCount == 0 else {
            throw ModelError.inconsistentDimensions(
                "head_count \(headCount) is not a multiple of head_count_kv \(kvHeadCount)")
        }
        let ropeDimensionCount = try integer("rope.dimension_count", default: headDimension)
        guard ropeDimensionCount % 2 == 0, ropeDimensionCount <= headDimension else {
            throw ModelError.inconsistentDimensions(
                "rope.dimension_count \(ropeDimensionCount) must be even and at most the head size \(headDimension)")
        }
        let feedForwardLength = try integer("feed_forward_length")

        // Every matrix row is whole Q8_0 blocks: the inputs of the projections are d, the attention output and f.
        for (name, width) in [("embedding_length", embeddingLength), ("feed_forward_length", feedForwardLength),
                              ("head_count * head size", headCount * headDimension)]
        where width % 32 != 0 {
            throw ModelError.inconsistentDimensions("\(name) \(width) is not a multiple of the Q8_0 block size 32")
        }

        guard let embedding = file.tensor(named: ModelWeights.tokenEmbeddingName) else {
            throw ModelError.missingTensor(ModelWeights.tokenEmbeddingName)
        }
        guard embedding.shape.count == 2, embedding.shape[0] == embeddingLength else {
            throw ModelError.wrongShape(
                tensor: ModelWeights.tokenEmbeddingName, expected: [embeddingLength, embedding.shape.last ?? 0],
                found: embedding.shape)
        }

        self.architecture = architecture
        self.embeddingLength = embeddingLength
        self.layerCount = try integer("block_count")
        self.headCount = headCount
        self.kvHeadCount = kvHeadCount
        self.headDimension = headDimension
        self.feedForwardLength = feedForwardLength
        self.vocabularySize = embedding.shape[1]
        self.contextLength = try integer("context_length")
        self.rmsNormEpsilon = Float(try real("attention.layer_norm_rms_epsilon"))
        self.ropeFrequencyBase = try real("rope.freq_base", default: 10000)
        self.ropeDimensionCount = ropeDimensionCount
        self.ropeLinearScale = try Self.ropeLinearScale(file: file, prefix: prefix)
    }

    /// The linear scaling factor, 1 when there is none; other scaling types (yarn, longrope) are refused
    /// rather than silently run without their corrections.
    private static func ropeLinearScale(file: GGUFFile, prefix: String) throws -> Double {
        let typeKey = prefix + "rope.scaling.type"
        guard let value = file.metadata[typeKey] else { return 1 }
        guard let type = value.stringValue else {
            throw ModelError.invalidMetadata(key: typeKey, reason: "is \(value.type), expected a string")
        }
        switch type {
        case "none":
            return 1
        case "linear":
            let factorKey = prefix + "rope.scaling.factor"
            guard let factor = file.float(factorKey) else { throw ModelError.missingMetadata(key: factorKey) }
            guard factor > 0, factor.isFinite else {
                throw ModelError.invalidMetadata(key: factorKey, reason: "is \(factor), expected a positive number")
            }
            return factor
        default:
            throw ModelError.invalidMetadata(key: typeKey, reason: "is \"\(type)\"; supported: none, linear")
        }
    }
}
