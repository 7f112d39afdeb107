@testable import FlywheelEngine
import FlywheelKernels
import Foundation
import XCTest

/// Tensor types other than Q8_0/F16/F32: the dequantizers against llama.cpp's own, a Q4_K_M model against
/// llama.cpp and the float64 reference, and hostile files. Fixtures: scripts/engine/make_quant_fixtures.py.
final class QuantizedTypesTests: XCTestCase {
    // MARK: Dequantizers against llama.cpp

    private struct BlockFixture {
        let name: String
        let type: GGUFTensorType
        let blockSize: Int
        let blockBytes: Int
        let count: Int
        let bytes: [UInt8]
        let expected: [Float]
    }

    private func blockFixtures() throws -> [BlockFixture] {
        let data = try Data(contentsOf: GGUFFixture.url("quant-blocks.json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let types = try XCTUnwrap(root["types"] as? [[String: Any]])
        return try types.map { entry in
            let raw = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(entry["bytes"] as? String)))
            let floats = try XCTUnwrap(Data(base64Encoded: try XCTUnwrap(entry["expected"] as? String)))
            let expected: [Float] = floats.withUnsafeBytes { raw in
                (0 ..< raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            return BlockFixture(
                name: try XCTUnwrap(entry["name"] as? String),
                type: GGUFTensorType(rawValue: UInt32(try XCTUnwrap(entry["type"] as? Int))),
                blockSize: try XCTUnwrap(entry["block_size"] as? Int),
                blockBytes: try XCTUnwrap(entry["block_bytes"] as? Int),
                count: try XCTUnwrap(entry["count"] as? Int),
                bytes: [UInt8](raw), expected: expected)
        }
    }

    private func dequantize(_ type: GGUFTensorType, _ bytes: [UInt8], count: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { Dequantization.dequantize(type, raw.baseAddress!, count: count, into: $0.baseAddress!) }
        }
        return out
    }

    func testEveryTypeMatchesLlamaCppBitForBit() throws {
        // llama.cpp's dequantize_row_* (and gguf-py, which the script checked agrees) on random blocks with
        // positive, negative, subnormal and zero scales. Tolerance: none, the bit patterns must be equal.
        let fixtures = try blockFixtures()
        XCTAssertEqual(Set(fixtures.map(\.type)), Set(GGUFTensorType.supported).subtracting([.f32]))
        for fixture in fixtures {
            XCTAssertEqual(fixture.type.name, fixture.name)
            XCTAssertEqual(fixture.expected.count, fixture.count, fixture.name)
            let got = dequantize(fixture.type, fixture.bytes, count: fixture.count)
            let mismatches = zip(got, fixture.expected).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
            XCTAssertTrue(mismatches.isEmpty, "\(fixture.name): \(mismatches.count) of \(fixture.count) differ, first at \(mismatches.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")
        }
    }

    func testLayoutsAreGgmlsAndRowsCanStartAtAnyBlock() throws {
        for fixture in try blockFixtures() {
            let layout = try XCTUnwrap(fixture.type.layout, fixture.name)
            XCTAssertEqual(layout.blockSize, fixture.blockSize, fixture.name)
            XCTAssertEqual(layout.blockBytes, fixture.blockBytes, fixture.name)
            XCTAssertEqual(fixture.bytes.count, fixture.count / layout.blockSize * layout.blockBytes, fixture.name)
            // Block by block from each block's own address: what a row starting mid-tensor sees.
            let step = max(layout.blockSize, 32)
            for start in stride(from: 0, to: fixture.count, by: step) {
                let from = start / layout.blockSize * layout.blockBytes
                let bytes = Array(fixture.bytes[from ..< from + step / layout.blockSize * layout.blockBytes])
                XCTAssertEqual(dequantize(fixture.type, bytes, count: step).map(\.bitPattern),
                               fixture.expected[start ..< start + step].map(\.bitPattern), "\(fixture.name) at \(start)")
            }
        }
    }

    func testF32IsCopiedAndUnknownTypesHaveNoLayout() {
        let values: [Float] = [1, -2.5, .pi, 0x1p-140, -0]
        let bytes = values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian, Array.init) }
        XCTAssertEqual(dequantize(.f32, bytes, count: 5).map(\.bitPattern), values.map(\.bitPattern))
        for id: UInt32 in [9, 15, 16, 17, 18, 19, 21, 22, 24, 26, 28, 29, 34, 35, 39, 0xDEAD] {
            XCTAssertNil(GGUFTensorType(rawValue: id).layout, "\(GGUFTensorType(rawValue: id))")
            XCTAssertFalse(Dequantization.canDequantize(GGUFTensorType(rawValue: id)))
        }
        XCTAssertEqual(GGUFTensorType.q4_K.name, "Q4_K")
        XCTAssertEqual(GGUFTensorType.q4_K.description, "Q4_K (12)")
        XCTAssertEqual(GGUFTensorType(rawValue: 77).name, "type 77")
    }

    // MARK: A Q4_K_M model against llama.cpp

    private static let modelName = "model-llama-q4km"

    private struct LlamaCppReference {
        let logits: [[Float]]
        let generated: [Int32]
        let generatedMargins: [Float]
        let tensorTypes: [String: Int]

        init() throws {
            let data = try Data(contentsOf: GGUFFixture.url(QuantizedTypesTests.modelName + ".json"))
            let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            let llama = try XCTUnwrap(root["llama_cpp"] as? [String: Any])
            logits = try XCTUnwrap(llama["logits"] as? [[Double]]).map { $0.map { Float($0) } }
            generated = try XCTUnwrap(llama["generated"] as? [Int]).map { Int32($0) }
            generatedMargins = try XCTUnwrap(llama["generated_margins"] as? [Double]).map { Float($0) }
            tensorTypes = try XCTUnwrap(root["tensor_types"] as? [String: Int])
        }
    }

    private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    private func promptLogits(_ reference: ModelReference) throws -> [[Float]] {
        let context = try InferenceContext(model: LlamaModel(path: reference.path), maxTokens: 64, pool: ComputePool(threadCount: 2))
        try context.evaluate(reference.tokens, allLogits: true)
        let vocab = context.model.config.vocabularySize
        let flat = context.logitsArray()
        return stride(from: 0, to: flat.count, by: vocab).map { Array(flat[$0 ..< $0 + vocab]) }
    }

    func testQ4KMModelLoadsEveryMatrixTypeItHas() throws {
        let reference = try ModelReference(Self.modelName)
        let llama = try LlamaCppReference()
        let model = try LlamaModel(path: reference.path)
        // llama.cpp's Q4_K_M picked Q4_K and Q6_K, and Q5_0 / Q8_0 for the two matrices whose rows (64) are
        // not whole super-blocks.
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: model.weights.matrixTypes.map { ($0.key.name, $0.value) }), llama.tensorTypes)
        XCTAssertEqual(model.weights.typeSummary, "Q4_K×5, Q6_K×2, Q5_0×1 requantized to Q8_0 at load, Q8_0×1 as stored")
        XCTAssertFalse(model.weights.isOutputTied)
    }

    func testQ4KMRequantizedMatricesAreGgufPysQ8_0BitForBit() throws {
        // Every matrix not stored as Q8_0 must become exactly the Q8_0 bytes that gguf-py's dequantize followed
        // by its Q8_0 quantize (bit-exact with ggml's reference quantizer) makes: an FNV-1a 64 of all its bytes.
        let reference = try ModelReference(Self.modelName)
        let data = try Data(contentsOf: GGUFFixture.url(Self.modelName + ".json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let expected = try XCTUnwrap(root["requantized_fnv1a64"] as? [String: String])
        // Row-major, the file's order (the row groups hold the same blocks; ModelWeightsTests checks that).
        let weights = try LlamaModel(path: reference.path, layout: .rows).weights
        let layer = weights.layers[0]
        let matrices: [String: Q8Matrix] = [
            "token_embd.weight": weights.tokenEmbedding, "output.weight": weights.output,
            "blk.0.attn_q.weight": layer.query, "blk.0.attn_k.weight": layer.key, "blk.0.attn_v.weight": layer.value,
            "blk.0.attn_output.weight": layer.attentionOutput, "blk.0.ffn_gate.weight": layer.gate,
            "blk.0.ffn_up.weight": layer.up, "blk.0.ffn_down.weight": layer.down,
        ]
        XCTAssertEqual(expected.count, 8)
        for (name, checksum) in expected {
            let matrix = try XCTUnwrap(matrices[name], name)
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in UnsafeRawBufferPointer(start: matrix.base, count: matrix.rows * matrix.rowStride) {
                hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
            }
            XCTAssertEqual(String(hash, radix: 16).leftPadded(to: 16), checksum, name)
        }
    }

    func testQ4KMLogitsMatchTheFloat64Reference() throws {
        // reference.py dequantized the file with gguf-py and computed in float64.
        let reference = try ModelReference(Self.modelName)
        let got = try promptLogits(reference)
        let worst = zip(got, reference.logits).map { maxDifference($0, $1) }.max()!
        XCTAssertLessThanOrEqual(worst, reference.tolerance, "max |logit - float64 reference|")
    }

    func testQ4KMLogitsAndGreedyTokensMatchLlamaCpp() throws {
        // llama.cpp multiplies the Q4_K/Q6_K/Q5_0 blocks as they are (activations in Q8_K or Q8_0); the engine
        // requantizes every weight to Q8_0. Each is off the exact float64 logits by its own rounding (measured:
        // llama.cpp 0.9%, the engine 1.4% of the logit spread), so the bound between them is 3% of the spread.
        // Measured when written: max |diff| 0.31 for a spread of 18.1 (1.7%) over 12 positions x 288 logits.
        let reference = try ModelReference(Self.modelName)
        let llama = try LlamaCppReference()
        let got = try promptLogits(reference)
        let all = llama.logits.joined()
        let spread = all.max()! - all.min()!
        let worst = zip(got, llama.logits).map { maxDifference($0, $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 0.03 * spread, "max |logit - llama.cpp| against spread \(spread)")

        // Greedy decoding reproduces llama.cpp's tokens for as long as its choice is clear: a top-2 margin over
        // twice the largest logit difference seen above (when written, all 16 tokens agreed, the first 7 clear).
        let context = try InferenceContext(model: LlamaModel(path: reference.path), maxTokens: 64, pool: ComputePool(threadCount: 2))
        try context.evaluate(reference.tokens)
        var checked = 0
        for (expected, margin) in zip(llama.generated, llama.generatedMargins) {
            guard margin > 2 * worst else { break }
            let next = Int32(context.withLogits { ModelReference.argmax($0) })
            XCTAssertEqual(next, expected, "greedy step \(checked)")
            guard next == expected else { break }
            checked += 1
            try context.evaluate(CollectionOfOne(next))
        }
        XCTAssertGreaterThanOrEqual(checked, 6, "too few clear greedy steps to compare")
    }

    func testStartUpSummaryNamesTheTypesAndTheRequantization() throws {
        let pool = ComputePool(threadCount: 1)
        let local = try LocalModel(name: "q4km", path: ModelReference(Self.modelName).path, pool: pool)
        XCTAssertTrue(local.summary.hasSuffix("weights Q4_K×5, Q6_K×2, Q5_0×1 requantized to Q8_0 at load, Q8_0×1 as stored"), local.summary)
        for (name, type, how) in [("model-llama-q8", "Q8_0", "as stored"), ("model-qwen2-f16", "F16", "requantized to Q8_0 at load")] {
            let local = try LocalModel(name: name, path: ModelReference(name).path, pool: pool)
            let matrices = local.model.file.tensors.filter { $0.shape.count == 2 }.count
            XCTAssertTrue(local.summary.hasSuffix("weights \(type)×\(matrices) \(how)"), local.summary)
        }
    }

    // MARK: Mixed small types through the loader

    func testEveryBlockOf32TypeAndBF16LoadAsMatricesAndBF16AsVectors() throws {
        // ModelBuilder's d = 32 fits blocks of 32 (K-quants need rows of 256: the Q4_K_M model covers those).
        var builder = ModelBuilder()
        let types: [(String, GGUFTensorType)] = [
            ("token_embd.weight", .q4_0), ("blk.0.attn_q.weight", .q4_1), ("blk.0.attn_k.weight", .q5_0),
            ("blk.0.attn_v.weight", .q5_1), ("blk.0.attn_output.weight", .iq4_nl), ("blk.0.ffn_gate.weight", .bf16),
            ("blk.0.ffn_up.weight", .f16), ("blk.0.ffn_down.weight", .q8_0), ("output.weight", .q4_0),
            ("blk.0.attn_norm.weight", .bf16), ("blk.0.ffn_norm.weight", .f16),
        ]
        for (name, type) in types { builder.change(tensor: name, type: type.rawValue) }
        let model = try LlamaModel(file: GGUFFile(bytes: builder.bytes()))
        XCTAssertEqual(model.weights.matrixTypes, [.q4_0: 2, .q4_1: 1, .q5_0: 1, .q5_1: 1, .iq4_nl: 1, .bf16: 1, .f16: 1, .q8_0: 1])
        XCTAssertEqual(model.weights.typeSummary,
                       "Q4_0×2, F16×1, Q4_1×1, Q5_0×1, Q5_1×1, IQ4_NL×1, BF16×1 requantized to Q8_0 at load, Q8_0×1 as stored")
        // ModelBuilder writes zero bytes for these types: every weight and norm element is 0.
        XCTAssertEqual(model.weights.layers[0].attentionNorm, [Float](repeating: 0, count: 32))
        var row = [Float](repeating: .nan, count: 32)
        row.withUnsafeMutableBufferPointer { model.weights.embed(token: 3, into: $0.baseAddress!) }
        XCTAssertEqual(row, [Float](repeating: 0, count: 32))
    }

    // MARK: Hostile files

    func testRowNotAWholeNumberOfBlocksIsAGGUFErrorNamingTheTensor() throws {
        var builder = ModelBuilder()
        builder.change(tensor: "blk.0.attn_v.weight", type: GGUFTensorType.q4_K.rawValue)  // rows of 32, blocks of 256
        XCTAssertThrowsError(try GGUFFile(bytes: builder.bytes())) { error in
            XCTAssertEqual(error as? GGUFError, .rowNotBlockAligned(name: "blk.0.attn_v.weight", rowLength: 32, blockSize: 256))
            XCTAssertTrue("\(error)".contains("not a multiple of the block size 256"), "\(error)")
        }
        // Through the serving layer: a clear start-up error, no crash.
        let path = try GGUFFixture.temporaryFile(builder.bytes(), name: "misaligned-q4k.gguf")
        XCTAssertThrowsError(try LocalModel(name: "bad", path: path, pool: ComputePool(threadCount: 1))) { error in
            XCTAssertTrue("\(error)".contains("blk.0.attn_v.weight"), "\(error)")
        }
        // Every block type, one tensor with a row one element short of a block... and 32 for K-quants.
        for type in GGUFTensorType.supported {
            let blockSize = type.layout!.blockSize
            guard blockSize > 1 else { continue }
            for rowLength in [blockSize - 1, blockSize + 32] where rowLength % blockSize != 0 {
                var b = GGUFBuilder()
                b.header(tensors: 1, kvs: 0)
                b.tensor("t", dims: [UInt64(rowLength), 2], type: type.rawValue)
                b.pad(to: 32)
                b.zeros(2 * (rowLength / blockSize + 1) * type.layout!.blockBytes)
                XCTAssertThrowsError(try GGUFFile(bytes: b.bytes), "\(type) \(rowLength)") { error in
                    XCTAssertEqual(error as? GGUFError, .rowNotBlockAligned(name: "t", rowLength: rowLength, blockSize: blockSize))
                }
            }
        }
    }

    func testTruncatedQuantizedTensorIsOutOfBounds() throws {
        // One Q6_K tensor of 2 rows of 256 needs 420 bytes; give it 419, then the whole fixture cut short.
        var b = GGUFBuilder()
        b.header(tensors: 1, kvs: 0)
        b.tensor("t", dims: [256, 2], type: GGUFTensorType.q6_K.rawValue)
        b.pad(to: 32)
        let start = b.bytes.count
        b.zeros(420)
        XCTAssertEqual(try GGUFFile(bytes: b.bytes).tensors[0].byteCount, 420)
        XCTAssertThrowsError(try GGUFFile(bytes: b.bytes.prefix(start + 419))) { error in
            XCTAssertEqual(error as? GGUFError, .tensorOutOfBounds(name: "t"))
        }

        let whole = try GGUFFixture.bytes(Self.modelName + ".gguf")
        let file = try GGUFFile(bytes: whole)
        let last = try XCTUnwrap(file.tensors.max { $0.offset < $1.offset })
        XCTAssertThrowsError(try LlamaModel(file: GGUFFile(bytes: whole.dropLast(100)))) { error in
            XCTAssertEqual(error as? GGUFError, .tensorOutOfBounds(name: last.name))
        }
    }

    func testHugeQuantizedShapeIsRejectedWithoutOverflow() throws {
        for (dims, type) in [([UInt64(1) << 62, 4], GGUFTensorType.q4_K), ([256, UInt64(1) << 60], .q6_K), ([1 << 40, 1 << 20], .q2_K)] {
            var b = GGUFBuilder()
            b.header(tensors: 1, kvs: 0)
            b.tensor("t", dims: dims, type: type.rawValue)
            b.pad(to: 32)
            b.zeros(256)
            XCTAssertThrowsError(try GGUFFile(bytes: b.bytes), "\(dims) \(type)") { error in
                let e = error as? GGUFError
                XCTAssertTrue(e == .invalidShape(name: "t", shape: dims) || e == .tensorOutOfBounds(name: "t"), "\(error)")
            }
        }
    }

    func testUnknownTypeIdIsAModelErrorNamingTensorAndType() throws {
        for id: UInt32 in [16, 23 + 100, 0xDEAD] {
            var builder = ModelBuilder()
            builder.change(tensor: "blk.0.ffn_up.weight", type: id)
            let file = try GGUFFile(bytes: builder.bytes())  // listed, unsized
            XCTAssertNil(file.tensor(named: "blk.0.ffn_up.weight")?.byteCount)
            XCTAssertThrowsError(try LlamaModel(file: file)) { error in
                XCTAssertEqual(error as? ModelError, .unsupportedTensorType(tensor: "blk.0.ffn_up.weight", type: GGUFTensorType(rawValue: id)))
                XCTAssertTrue("\(error)".contains("blk.0.ffn_up.weight"), "\(error)")
                XCTAssertTrue("\(error)".contains("Q4_K"), "the message lists what loads: \(error)")
            }
        }
    }

    func testQuantizedVectorIsRefused() {
        var builder = ModelBuilder()
        builder.change(tensor: "output_norm.weight", type: GGUFTensorType.q4_0.rawValue)
        XCTAssertThrowsError(try LlamaModel(file: GGUFFile(bytes: builder.bytes()))) { error in
            XCTAssertEqual(error as? ModelError, .unsupportedTensorType(tensor: "output_norm.weight", type: .q4_0))
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
