import FlywheelKernels
import XCTest
@testable import FlywheelEngine

final class HiddenStateTests: XCTestCase {
    /// The sentence vector is unit length, the same whether the prompt runs in one batch or in chunks (it averages
    /// every token's last-layer output, not just the last chunk's), differs between prompts, and leaves the
    /// context empty for the next use.
    func testMeanPooledHiddenStatesAreChunkIndependentAndDistinguishPrompts() throws {
        let reference = try ModelReference("model-llama-q8")
        let model = try LlamaModel(path: reference.path)
        let pool = ComputePool(threadCount: 1)
        let whole = try InferenceContext(model: model, maxTokens: 64, pool: pool, batchCapacity: 64)
        let chunked = try InferenceContext(model: model, maxTokens: 64, pool: pool, batchCapacity: 4)
        let prompt = reference.tokens
        let a = try whole.meanPooledHiddenState(prompt)
        let b = try chunked.meanPooledHiddenState(prompt)
        XCTAssertEqual(a.count, model.config.embeddingLength)
        XCTAssertEqual(a.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-4)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 2e-3) }
        XCTAssertEqual(whole.position, 0)
        let other = try whole.meanPooledHiddenState(Array(prompt.reversed()))
        let cosine = zip(a, other).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        XCTAssertLessThan(cosine, 0.9999)
        XCTAssertEqual(try whole.meanPooledHiddenState(prompt), a)
        XCTAssertThrowsError(try whole.meanPooledHiddenState([Int32]()))
        XCTAssertThrowsError(try whole.meanPooledHiddenState([Int32(model.config.vocabularySize)]))
    }
}
