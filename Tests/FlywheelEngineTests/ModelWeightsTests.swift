@testable import FlywheelEngine
import FlywheelKernels
import XCTest

/// Loading tensors: names, shapes and types checked, F16/F32 quantized at load, tied output embeddings.
final class ModelWeightsTests: XCTestCase {
    private func load(_ builder: ModelBuilder) throws -> LlamaModel {
        try LlamaModel(file: GGUFFile(bytes: builder.bytes()))
    }

    private func assertModelError(_ builder: ModelBuilder, _ expected: ModelError, line: UInt = #line) {
        XCTAssertThrowsError(try load(builder), line: line) { error in
            XCTAssertEqual(error as? ModelError, expected, line: line)
        }
    }

    func testMissingLayerTensorIsNamed() {
        var builder = ModelBuilder(layers: 2)
        builder.remove(tensor: "blk.1.ffn_up.weight")
        assertModelError(builder, .missingTensor("blk.1.ffn_up.weight"))
    }

    func testMissingOutputNormIsNamed() {
        var builder = ModelBuilder()
        builder.remove(tensor: "output_norm.weight")
        assertModelError(builder, .missingTensor("output_norm.weight"))
    }

    func testWrongShapeNamesTensorAndBothShapes() {
        var builder = ModelBuilder()
        builder.change(tensor: "blk.0.attn_k.weight", dims: [32, 32])
        assertModelError(builder, .wrongShape(tensor: "blk.0.attn_k.weight", expected: [32, 16], found: [32, 32]))
        builder = ModelBuilder()
        builder.change(tensor: "blk.0.ffn_norm.weight", dims: [32, 1])
        assertModelError(builder, .wrongShape(tensor: "blk.0.ffn_norm.weight", expected: [32], found: [32, 1]))
    }

    func testUnsupportedTensorTypeNamesTensorAndType() {
        var builder = ModelBuilder()
        builder.change(tensor: "blk.0.attn_v.weight", type: 16)  // IQ2_XXS: no layout here
        assertModelError(builder, .unsupportedTensorType(tensor: "blk.0.attn_v.weight", type: GGUFTensorType(rawValue: 16)))
        XCTAssertTrue(ModelError.unsupportedTensorType(tensor: "t", type: GGUFTensorType(rawValue: 16))
            .description.contains("IQ2_XXS"))
    }

    func testQuantizedNormIsRejected() {
        var builder = ModelBuilder()
        builder.change(tensor: "blk.0.attn_norm.weight", type: 8)  // Q8_0 1-D: not for norms
        assertModelError(builder, .unsupportedTensorType(tensor: "blk.0.attn_norm.weight", type: .q8_0))
    }

    func testWithoutOutputWeightTheEmbeddingIsTheOutput() throws {
        let tied = try load(ModelBuilder(tiedOutput: true))
        XCTAssertTrue(tied.weights.isOutputTied)
        XCTAssertEqual(tied.weights.output.base, tied.weights.tokenEmbedding.base)
        let untied = try load(ModelBuilder())
        XCTAssertFalse(untied.weights.isOutputTied)
        XCTAssertNotEqual(untied.weights.output.base, untied.weights.tokenEmbedding.base)
    }

    func testQ8MatricesAreUsedInPlaceAndF16MatricesAreQuantizedAtLoad() throws {
        // Q8_0: the embedding row is the file's bytes; F16: within Q8_0 rounding of the file's values.
        let q8 = try LlamaModel(path: GGUFFixture.url("model-llama-q8.gguf").path, layout: .rows)
        let q8Row = try q8.file.withTensorBytes("token_embd.weight") { bytes in
            Array(bytes.prefix(Q8Block.rowByteCount(64) * 4).suffix(Q8Block.rowByteCount(64)))
        }
        let embedded = Array(UnsafeRawBufferPointer(start: q8.weights.tokenEmbedding.row(3), count: q8Row.count))
        XCTAssertEqual(embedded, q8Row)
        let fileBase = try q8.file.withTensorBytes("token_embd.weight") { $0.baseAddress! }
        XCTAssertEqual(q8.weights.tokenEmbedding.base, fileBase)

        let f16 = try LlamaModel(path: GGUFFixture.url("model-qwen2-f16.gguf").path)
        let d = f16.config.embeddingLength
        let fileRow: [Float] = try f16.file.withTensorBytes("token_embd.weight") { bytes in
            (0 ..< d).map { GGUFFixture.half(bytes.load(fromByteOffset: (5 * d + $0) * 2, as: UInt16.self)) }
        }
        var row = [Float](repeating: 0, count: d)
        row.withUnsafeMutableBufferPointer { f16.weights.embed(token: 5, into: $0.baseAddress!) }
        let scale = fileRow.map(abs).max()!
        for (mine, theirs) in zip(row, fileRow) { XCTAssertEqual(mine, theirs, accuracy: scale / 127) }
    }

    func testRowGroupsAreACopyOfTheFileWithTheSameRowsAndTheTiedOutputStaysTied() throws {
        let path = try GGUFFixture.url("model-llama-q8.gguf").path
        let rows = try LlamaModel(path: path, layout: .rows)
        let grouped = try LlamaModel(path: path, layout: .rowGroups)
        XCTAssertEqual(grouped.weights.layout, .rowGroups)
        XCTAssertEqual(grouped.weights.layers[0].gate.layout, .rowGroups)
        let fileBase = try grouped.file.withTensorBytes("token_embd.weight") { $0.baseAddress! }
        XCTAssertNotEqual(grouped.weights.tokenEmbedding.base, fileBase)
        let d = rows.config.embeddingLength
        var a = [Float](repeating: 0, count: d), b = a
        for token in [0, 3, rows.config.vocabularySize - 1] {
            rows.weights.embed(token: token, into: &a)
            grouped.weights.embed(token: token, into: &b)
            XCTAssertEqual(a, b, "token \(token)")
        }
        for (x, y) in [(rows.weights.layers[1].down, grouped.weights.layers[1].down),
                       (rows.weights.output, grouped.weights.output)] {
            var u = [Float](repeating: 0, count: x.columns), v = u
            for r in [0, 1, 2, 3, 5, x.rows - 1] {
                x.dequantizeRow(r, into: &u)
                y.dequantizeRow(r, into: &v)
                XCTAssertEqual(u, v, "row \(r)")
            }
        }
        XCTAssertEqual(grouped.weights.isOutputTied, rows.weights.isOutputTied)
        if grouped.weights.isOutputTied { XCTAssertEqual(grouped.weights.output.base, grouped.weights.tokenEmbedding.base) }
        // Requantized types go straight into groups.
        let f16 = try LlamaModel(path: try GGUFFixture.url("model-qwen2-f16.gguf").path, layout: .rowGroups)
        let f16Rows = try LlamaModel(path: try GGUFFixture.url("model-qwen2-f16.gguf").path, layout: .rows)
        let m = f16.weights.layers[0].query, n = f16Rows.weights.layers[0].query
        XCTAssertEqual(m.layout, .rowGroups)
        var u = [Float](repeating: 0, count: m.columns), v = u
        for r in 0 ..< m.rows {
            m.dequantizeRow(r, into: &u)
            n.dequantizeRow(r, into: &v)
            XCTAssertEqual(u, v, "row \(r)")
        }
    }

    func testWithoutMemoryForCopiesQ8KeepsTheFilesRowsAndOtherTypesFailNamingTheTensor() throws {
        let q8 = try GGUFFile(path: try GGUFFixture.url("model-llama-q8.gguf").path)
        let refused: QuantizedStorage.Allocator = { _ in nil }
        let weights = try ModelWeights(file: q8, config: ModelConfig(file: q8), layout: .rowGroups, allocate: refused)
        XCTAssertEqual(weights.layout, .rows)
        let fileBase = try q8.withTensorBytes("blk.0.ffn_gate.weight") { $0.baseAddress! }
        XCTAssertEqual(weights.layers[0].gate.base, fileBase)

        let f16 = try GGUFFile(path: try GGUFFixture.url("model-qwen2-f16.gguf").path)
        XCTAssertThrowsError(try ModelWeights(file: f16, config: ModelConfig(file: f16), layout: .rows, allocate: refused)) {
            guard case let .outOfMemory(tensor, bytes)? = $0 as? ModelError else { return XCTFail("\($0)") }
            XCTAssertEqual(tensor, "token_embd.weight")
            XCTAssertGreaterThan(bytes, 0)
            XCTAssertTrue("\($0)".contains("not enough memory to load tensor 'token_embd.weight'"), "\($0)")
        }
    }

    func testQwen2BiasesAreLoaded() throws {
        let model = try LlamaModel(path: GGUFFixture.url("model-qwen2-q8.gguf").path)
        XCTAssertEqual(model.weights.layers[0].queryBias?.count, model.config.queryLength)
        XCTAssertEqual(model.weights.layers[0].keyBias?.count, model.config.keyValueLength)
        XCTAssertEqual(model.weights.layers[0].valueBias?.count, model.config.keyValueLength)
        let llama = try LlamaModel(path: GGUFFixture.url("model-llama-q8.gguf").path)
        XCTAssertNil(llama.weights.layers[0].queryBias)
    }

    func testRoPEFrequencyFactorsAreLoadedWhenPresentAndShapeChecked() throws {
        let llama3 = try LlamaModel(path: GGUFFixture.url("model-llama-ropefreqs-q8.gguf").path)
        XCTAssertEqual(llama3.weights.ropeFrequencyFactors?.count, llama3.config.ropeDimensionCount / 2)
        XCTAssertEqual(llama3.weights.ropeFrequencyFactors?.first, 1)
        XCTAssertEqual(llama3.weights.ropeFrequencyFactors?.last, 8)
        XCTAssertNil(try load(ModelBuilder()).weights.ropeFrequencyFactors)
        var builder = ModelBuilder()
        builder.tensors.append(.init(name: "rope_freqs.weight", dims: [16]))
        assertModelError(builder, .wrongShape(tensor: "rope_freqs.weight", expected: [8], found: [16]))
    }

    func testExplicitHeadSizeWiderThanEmbeddingPerHeadShapesTheProjections() throws {
        // attention.key_length = 32 with 2 heads over d = 32: q is 64 wide, k and v 32, Wo maps 64 -> 32.
        var builder = ModelBuilder()
        builder.set("llama.attention.key_length", .u32(32))
        builder.change(tensor: "blk.0.attn_q.weight", dims: [32, 64])
        builder.change(tensor: "blk.0.attn_k.weight", dims: [32, 32])
        builder.change(tensor: "blk.0.attn_v.weight", dims: [32, 32])
        builder.change(tensor: "blk.0.attn_output.weight", dims: [64, 32])
        let model = try load(builder)
        XCTAssertEqual(model.config.headDimension, 32)
        XCTAssertEqual(model.config.queryLength, 64)
        let context = try InferenceContext(model: model, maxTokens: 8, pool: ComputePool(threadCount: 2))
        try context.evaluate([1, 2, 3])
        XCTAssertTrue(context.logitsArray().allSatisfy(\.isFinite))
    }

    func testABuiltModelRunsAndGivesFiniteLogits() throws {
        let model = try load(ModelBuilder(layers: 2, tiedOutput: true))
        let context = try InferenceContext(model: model, maxTokens: 16, pool: ComputePool(threadCount: 2))
        try context.evaluate([1, 2, 3, 7])
        XCTAssertEqual(context.logitsArray().count, 8)
        XCTAssertTrue(context.logitsArray().allSatisfy(\.isFinite))
    }
}
