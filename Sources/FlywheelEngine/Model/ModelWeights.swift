import FlywheelKernels

/// All weights of a model, ready for the int8 kernels.
///
/// Q8_0 matrices in the file are used in place: `Q8Matrix` views into the file's read-only mapping,
/// which this value keeps alive. Matrices of every other type with a layout (F32, F16, BF16, Q4_0, Q4_1,
/// Q5_0, Q5_1, IQ4_NL, the K-quants Q2_K...Q6_K, IQ4_XS) are expanded to floats row by row
/// (`Dequantization`) and requantized to Q8_0 once, here, into memory the weights own: the kernels only
/// multiply Q8_0. The cost is the usual Q8_0 rounding on top of the file's own, about 0.4% relative per
/// weight. Norm weights and biases (F32, F16 or BF16) become `[Float]`.
/// Without `output.weight` the output projection is the token embedding (tied embeddings).
public struct ModelWeights: Sendable {
    static let tokenEmbeddingName = "token_embd.weight"

    /// E (vocabularySize, d).
    public let tokenEmbedding: Q8Matrix
    /// The transformer blocks in order.
    public let layers: [LayerWeights]
    /// RMSNorm weight before the output projection (d).
    public let outputNorm: [Float]
    /// Wout (vocabularySize, d); the same memory as `tokenEmbedding` when tied.
    public let output: Q8Matrix
    /// Whether `output` is the token embedding.
    public let isOutputTied: Bool
    /// `rope_freqs.weight` (ropeDimensionCount / 2), Llama 3.1-style frequency factors: RoPE pair i turns
    /// `factor[i]` times slower. `nil` when the file has none.
    public let ropeFrequencyFactors: [Float]?

    /// How many matrices of each file type were loaded (the tied output counted once, as the embedding).
    /// Every type but Q8_0 was requantized to Q8_0 at load.
    public let matrixTypes: [GGUFTensorType: Int]

    /// The mapping that the in-place matrices point into.
    private let file: GGUFFile
    /// Matrices converted at load time.
    private let ownedStorage: [QuantizedStorage]

    /// Loads and checks every tensor `config` needs, keeping the matrices in `layout` where their rows allow it
    /// (the layout the active kernels read fastest by default). Throws `ModelError`.
    public init(file: GGUFFile, config: ModelConfig, layout: Q8Layout = Q8Matrix.preferredLayout) throws {
        try self.init(file: file, config: config, layout: layout, allocate: QuantizedStorage.systemAllocator)
    }

    /// `init(file:config:layout:)` taking memory for converted matrices from `allocate` (tests give one that
    /// fails).
    init(file: GGUFFile, config: ModelConfig, layout: Q8Layout, allocate: @escaping QuantizedStorage.Allocator) throws {
        var loader = Loader(file: file, layout: layout, allocate: allocate)
        let d = config.embeddingLength
        let f = config.feedForwardLength
        let q = config.queryLength
        let kv = config.keyValueLength
        let vocab = config.vocabularySize

        tokenEmbedding = try loader.matrix(Self.tokenEmbeddingName, rows: vocab, columns: d)
        var layers: [LayerWeights] = []
        layers.reserveCapacity(config.layerCount)
        for i in 0 ..< config.layerCount {
            let blk = "blk.\(i)."
            layers.append(LayerWeights(
                attentionNorm: try loader.vector(blk + "attn_norm.weight", count: d),
                query: try loader.matrix(blk + "attn_q.weight", rows: q, columns: d),
                key: try loader.matrix(blk + "attn_k.weight", rows: kv, columns: d),
                value: try loader.matrix(blk + "attn_v.weight", rows: kv, columns: d),
                queryBias: try loader.optionalVector(blk + "attn_q.bias", count: q),
                keyBias: try loader.optionalVector(blk + "attn_k.bias", count: kv),
                valueBias: try loader.optionalVector(blk + "attn_v.bias", count: kv),
                attentionOutput: try loader.matrix(blk + "attn_output.weight", rows: d, columns: q),
                feedForwardNorm: try loader.vector(blk + "ffn_norm.weight", count: d),
                gate: try loader.matrix(blk + "ffn_gate.weight", rows: f, columns: d),
                up: try loader.matrix(blk + "ffn_up.weight", rows: f, columns: d),
                down: try loader.matrix(blk + "ffn_down.weight", rows: d, columns: f)))
        }
        self.layers = layers
        outputNorm = try loader.vector("output_norm.weight", count: d)
        if file.tensor(named: "output.weight") != nil {
            output = try loader.matrix("output.weight", rows: vocab, columns: d)
            isOutputTied = false
        } else {
            output = tokenEmbedding
            isOutputTied = true
        }
        ropeFrequencyFactors = try loader.optionalVector("rope_freqs.weight", count: config.ropeDimensionCount / 2)
        self.file = file
        self.ownedStorage = loader.ownedStorage
        self.matrixTypes = loader.matrixTypes
    }

    /// The matrices' file types for people: "Q8_0×7 as stored" or
    /// "Q4_K×5, Q6_K×2 requantized to Q8_0 at load, Q8_0×1 as stored" (most frequent first).
    public var typeSummary: String {
        func list(_ entries: [(key: GGUFTensorType, value: Int)]) -> String {
            entries.sorted { ($0.value, $1.key.rawValue) > ($1.value, $0.key.rawValue) }
                .map { "\($0.key.name)×\($0.value)" }.joined(separator: ", ")
        }
        let requantized = matrixTypes.filter { $0.key != .q8_0 }.map { $0 }
        let stored = matrixTypes.filter { $0.key == .q8_0 }.map { $0 }
        var parts: [String] = []
        if !requantized.isEmpty { parts.append(list(requantized) + " requantized to Q8_0 at load") }
        if !stored.isEmpty { parts.append(list(stored) + " as stored") }
        return parts.joined(separator: ", ")
    }

    /// Writes row `token` of the embedding, dequantized, to `out` (d floats).
    public func embed(token: Int, into out: UnsafeMutablePointer<Float>) {
        tokenEmbedding.dequantizeRow(token, into: out)
    }

    /// The layout the layers' matrices are kept in (`Q8Matrix.preferredLayout` at load, where the shapes allow
    /// it; a matrix whose rows are not a multiple of 4 stays row-major).
    public var layout: Q8Layout { layers.first?.gate.layout ?? output.layout }

    /// Reads tensors out of a file, checking names, shapes and types.
    private struct Loader {
        let file: GGUFFile
        var ownedStorage: [QuantizedStorage] = []
        var matrixTypes: [GGUFTensorType: Int] = [:]
        /// The layout matrices are put in where their rows allow it.
        let layout: Q8Layout
        /// Memory for the matrices made at load.
        let allocate: QuantizedStorage.Allocator

        init(file: GGUFFile, layout: Q8Layout, allocate: @escaping QuantizedStorage.Allocator) {
            self.file = file
            self.layout = layout
            self.allocate = allocate
        }

        /// A (rows, columns) matrix: GGUF shape [columns, rows]. Q8_0 is used in place, or copied into
        /// row groups where `layout` is `.rowGroups` (and the rows allow it); any other type with a layout is
        /// requantized to Q8_0 row by row, into that layout.
        mutating func matrix(_ name: String, rows: Int, columns: Int) throws -> Q8Matrix {
            let info = try tensor(name, shape: [columns, rows])
            let type = info.type
            guard let blockLayout = type.layout else { throw ModelError.unsupportedTensorType(tensor: name, type: type) }
            matrixTypes[type, default: 0] += 1
            let layout: Q8Layout = rows % Q8Matrix.groupRows == 0 ? self.layout : .rows
            if type == .q8_0 {
                // The pointer outlives the closure on purpose: it points into the file's mapping, which
                // lives as long as the GGUFFile that ModelWeights holds.
                let base = try file.withTensorBytes(name) { $0.baseAddress! }
                let stored = Q8Matrix(base: base, rows: rows, columns: columns)
                // Without memory for the copy the file's rows serve as they are (the kernels take either layout).
                guard layout == .rowGroups, let storage = QuantizedStorage(copying: stored, layout: layout, allocate: allocate)
                else { return stored }
                ownedStorage.append(storage)
                file.releaseTensorPages(name)  // read once; the copy is what runs
                return storage.matrix
            }
            // The reader checked at open that rows are whole blocks and that rows * rowBytes bytes lie
            // inside the file; ModelConfig checked that columns are whole Q8_0 blocks.
            let rowBytes = columns / blockLayout.blockSize * blockLayout.blockBytes
            let converted = try file.withTensorBytes(name) { bytes in
                QuantizedStorage(rows: rows, columns: columns, layout: layout, allocate: allocate) { row, out in
                    Dequantization.dequantize(type, bytes.baseAddress! + row * rowBytes, count: columns, into: out)
                }
            }
            guard let storage = converted else {
                throw ModelError.outOfMemory(tensor: name, bytes: rows * Q8Block.rowByteCount(columns))
            }
            file.releaseTensorPages(name)
            ownedStorage.append(storage)
            return storage.matrix
        }

        /// A vector of `count` floats stored as F32, F16 or BF16.
        func vector(_ name: String, count: Int) throws -> [Float] {
            let info = try tensor(name, shape: [count])
            guard info.type == .f32 || info.type == .f16 || info.type == .bf16 else {
                throw ModelError.unsupportedTensorType(tensor: name, type: info.type)
            }
            return try file.withTensorBytes(name) { bytes in
                [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
                    Dequantization.dequantize(info.type, bytes.baseAddress!, count: count, into: buffer.baseAddress!)
                    initialized = count
                }
            }
        }

        func optionalVector(_ name: String, count: Int) throws -> [Float]? {
            file.tensor(named: name) == nil ? nil : try vector(name, count: count)
        }

        private func tensor(_ name: String, shape: [Int]) throws -> GGUFTensorInfo {
            guard let info = file.tensor(named: name) else { throw ModelError.missingTensor(name) }
            guard info.shape == shape else { throw ModelError.wrongShape(tensor: name, expected: shape, found: info.shape) }
            return info
        }
    }
}
