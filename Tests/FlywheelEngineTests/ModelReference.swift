import Foundation
import XCTest

/// A checked-in model fixture and what scripts/engine/reference.py (float64 numpy) computed for it.
struct ModelReference {
    /// Path of the GGUF file.
    let path: String
    /// The prompt the reference evaluated.
    let tokens: [Int32]
    /// Reference logits, one row per prompt position.
    let logits: [[Float]]
    /// The last four rows of `logits` recomputed with the engine's Q8_0 rounding emulated in numpy.
    let emulatedTailLogits: [[Float]]
    /// 16 greedy tokens after the prompt.
    let generated: [Int32]
    /// The reference's top-1 minus top-2 logit at each greedy step.
    let generatedMargins: [Float]

    /// Loads `name`.gguf and `name`.json from the fixtures.
    init(_ name: String) throws {
        path = try GGUFFixture.url(name + ".gguf").path
        let data = try Data(contentsOf: GGUFFixture.url(name + ".json"))
        let root = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        tokens = try XCTUnwrap(root["tokens"] as? [Int]).map { Int32($0) }
        logits = try XCTUnwrap(root["logits"] as? [[Double]]).map { $0.map { Float($0) } }
        emulatedTailLogits = try XCTUnwrap(root["logits_q8_tail"] as? [[Double]]).map { $0.map { Float($0) } }
        generated = try XCTUnwrap(root["generated"] as? [Int]).map { Int32($0) }
        generatedMargins = try XCTUnwrap(root["generated_margins"] as? [Double]).map { Float($0) }
    }

    /// The fixtures: llama Q8_0 untied, llama Q8_0 with rope_freqs and linear RoPE scaling, qwen2 Q8_0 tied
    /// with biases, qwen2 F16 tied.
    static let names = ["model-llama-q8", "model-llama-ropefreqs-q8", "model-qwen2-q8", "model-qwen2-f16"]

    /// The accuracy bound the engine must meet: 2% of the spread of the reference logits.
    /// Activations are quantized to Q8_0 (about 0.4% relative error per element) before every
    /// product, so a few layers of products land around 1%; 2% leaves a margin without hiding a
    /// wrong RoPE pairing or a missing bias, which move logits by tens of percent.
    var tolerance: Float {
        let all = logits.joined()
        return 0.02 * (all.max()! - all.min()!)
    }

    /// Top-1 minus top-2 of a row.
    static func margin(_ row: some Collection<Float>) -> Float {
        var best = -Float.infinity, second = -Float.infinity
        for v in row {
            if v > best { (best, second) = (v, best) } else if v > second { second = v }
        }
        return best - second
    }

    static func argmax(_ row: some Collection<Float>) -> Int {
        var best = -Float.infinity, index = 0
        for (i, v) in row.enumerated() where v > best { (best, index) = (v, i) }
        return index
    }
}
