import FlywheelEngine
import XCTest

/// Reading hyper-parameters from GGUF metadata, and the errors for metadata that does not describe a model.
final class ModelConfigTests: XCTestCase {
    private func config(_ builder: ModelBuilder) throws -> ModelConfig {
        try ModelConfig(file: GGUFFile(bytes: builder.bytes()))
    }

    private func assertModelError(_ builder: ModelBuilder, _ expected: ModelError, line: UInt = #line) {
        XCTAssertThrowsError(try config(builder), line: line) { error in
            XCTAssertEqual(error as? ModelError, expected, line: line)
        }
    }

    func testLlamaFixtureConfiguration() throws {
        let file = try GGUFFile(path: GGUFFixture.url("model-llama-q8.gguf").path)
        let config = try ModelConfig(file: file)
        XCTAssertEqual(config.architecture, .llama)
        XCTAssertEqual(config.embeddingLength, 64)
        XCTAssertEqual(config.layerCount, 2)
        XCTAssertEqual(config.headCount, 4)
        XCTAssertEqual(config.kvHeadCount, 2)
        XCTAssertEqual(config.headDimension, 16)
        XCTAssertEqual(config.feedForwardLength, 96)
        XCTAssertEqual(config.vocabularySize, 320)
        XCTAssertEqual(config.contextLength, 256)
        XCTAssertEqual(config.rmsNormEpsilon, 1e-5)
        XCTAssertEqual(config.ropeFrequencyBase, 10000)
        XCTAssertEqual(config.ropeDimensionCount, 16)
        XCTAssertEqual(config.ropeStyle, .adjacentPairs)
    }

    func testQwen2UsesNeoXRoPEAndDefaultsTheRotatedDimensionsToTheHeadSize() throws {
        let file = try GGUFFile(path: GGUFFixture.url("model-qwen2-q8.gguf").path)
        XCTAssertNil(file.metadata["qwen2.rope.dimension_count"])
        let config = try ModelConfig(file: file)
        XCTAssertEqual(config.architecture, .qwen2)
        XCTAssertEqual(config.ropeStyle, .halves)
        XCTAssertEqual(config.ropeDimensionCount, config.headDimension)
        XCTAssertEqual(config.ropeFrequencyBase, 1_000_000)
        XCTAssertEqual(config.rmsNormEpsilon, 1e-6)
    }

    func testOptionalKeysTakeTheirDefaults() throws {
        var builder = ModelBuilder()
        builder.remove(key: "llama.attention.head_count_kv")
        let config = try config(builder)
        XCTAssertEqual(config.kvHeadCount, config.headCount)
        XCTAssertEqual(config.ropeFrequencyBase, 10000)
    }

    func testUnsupportedArchitectureIsNamed() {
        var builder = ModelBuilder()
        builder.set("general.architecture", .string("mamba"))
        assertModelError(builder, .unsupportedArchitecture("mamba"))
    }

    func testMissingArchitectureKey() {
        var builder = ModelBuilder()
        builder.remove(key: "general.architecture")
        assertModelError(builder, .missingMetadata(key: "general.architecture"))
    }

    func testMissingRequiredKeyIsNamed() {
        var builder = ModelBuilder()
        builder.remove(key: "llama.feed_forward_length")
        assertModelError(builder, .missingMetadata(key: "llama.feed_forward_length"))
        builder = ModelBuilder()
        builder.remove(key: "llama.attention.layer_norm_rms_epsilon")
        assertModelError(builder, .missingMetadata(key: "llama.attention.layer_norm_rms_epsilon"))
    }

    func testWrongTypedOrZeroKeyIsInvalid() {
        var builder = ModelBuilder()
        builder.set("llama.block_count", .string("two"))
        assertModelError(builder, .invalidMetadata(key: "llama.block_count", reason: "is string, expected an integer"))
        builder.set("llama.block_count", .u32(0))
        assertModelError(builder, .invalidMetadata(key: "llama.block_count", reason: "is 0, expected > 0"))
        // Absurd sizes are refused before anything multiplies them.
        builder = ModelBuilder()
        builder.set("llama.attention.key_length", .u32(UInt32.max))
        assertModelError(builder, .invalidMetadata(
            key: "llama.attention.key_length", reason: "is \(UInt32.max), larger than \(ModelConfig.maximumDimension)"))
    }

    func testHeadsThatDoNotDivideAreInconsistent() {
        var builder = ModelBuilder()
        builder.set("llama.attention.head_count", .u32(3))
        assertModelError(builder, .inconsistentDimensions("embedding_length 32 is not a multiple of head_count 3"))
        builder = ModelBuilder()
        builder.set("llama.attention.head_count_kv", .u32(4))
        builder.set("llama.attention.head_count", .u32(2))
        assertModelError(builder, .inconsistentDimensions("head_count 2 is not a multiple of head_count_kv 4"))
    }

    func testWidthsThatAreNotWholeQ8BlocksAreInconsistent() {
        var builder = ModelBuilder()
        builder.set("llama.feed_forward_length", .u32(48))
        assertModelError(
            builder, .inconsistentDimensions("feed_forward_length 48 is not a multiple of the Q8_0 block size 32"))
    }

    func testOddRoPEDimensionCountIsInconsistent() {
        var builder = ModelBuilder()
        builder.set("llama.rope.dimension_count", .u32(15))
        assertModelError(builder, .inconsistentDimensions(
            "rope.dimension_count 15 must be even and at most the head size 16"))
    }

    func testLinearRoPEScalingIsReadAndOtherScalingsAreRefused() throws {
        var builder = ModelBuilder()
        XCTAssertEqual(try config(builder).ropeLinearScale, 1)
        builder.set("llama.rope.scaling.type", .string("linear"))
        builder.set("llama.rope.scaling.factor", .f32(4))
        XCTAssertEqual(try config(builder).ropeLinearScale, 4)
        builder.remove(key: "llama.rope.scaling.factor")
        assertModelError(builder, .missingMetadata(key: "llama.rope.scaling.factor"))
        builder.set("llama.rope.scaling.type", .string("yarn"))
        assertModelError(builder, .invalidMetadata(
            key: "llama.rope.scaling.type", reason: "is \"yarn\"; supported: none, linear"))
    }

    func testMissingEmbeddingIsNamed() {
        var builder = ModelBuilder()
        builder.remove(tensor: "token_embd.weight")
        assertModelError(builder, .missingTensor("token_embd.weight"))
    }
}
