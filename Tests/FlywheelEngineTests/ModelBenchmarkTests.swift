import FlywheelEngine
import FlywheelKernels
import Foundation
import XCTest

/// A hand-run timing, skipped unless FLYWHEEL_BENCH_MODEL names a GGUF file. Best in a release build
/// (other test targets use `@testable`, hence `-enable-testing`):
/// `python3 scripts/engine/make_model.py /tmp/smollm2.gguf --preset smollm2-135m`
/// `FLYWHEEL_BENCH_MODEL=/tmp/smollm2.gguf swift test -c release -Xswiftc -enable-testing --filter ModelBenchmarkTests`
/// Optional: FLYWHEEL_BENCH_THREADS (2), FLYWHEEL_BENCH_PROMPT (128 tokens), FLYWHEEL_BENCH_DECODE (64 tokens).
final class ModelBenchmarkTests: XCTestCase {
    func testPromptAndDecodeThroughput() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let path = environment["FLYWHEEL_BENCH_MODEL"] else {
            throw XCTSkip("set FLYWHEEL_BENCH_MODEL=/path/to/model.gguf to run the benchmark")
        }
        let threads = Int(environment["FLYWHEEL_BENCH_THREADS"] ?? "") ?? 2
        let promptLength = Int(environment["FLYWHEEL_BENCH_PROMPT"] ?? "") ?? 128
        let decodeLength = Int(environment["FLYWHEEL_BENCH_DECODE"] ?? "") ?? 64

        let clock = ContinuousClock()
        let loadStart = clock.now
        let model = try LlamaModel(path: path)
        let loadTime = clock.now - loadStart
        let context = try InferenceContext(
            model: model, maxTokens: promptLength + decodeLength, pool: ComputePool(threadCount: threads))
        let vocab = Int32(model.config.vocabularySize)
        let prompt = (0 ..< promptLength).map { Int32(($0 * 7919 + 13) % Int(min(vocab, 300))) }

        // Warm the pages of the mapping and the caches once, then time a fresh sequence.
        try context.evaluate(prompt.prefix(8))
        context.reset()

        let promptStart = clock.now
        try context.evaluate(prompt)
        let promptTime = clock.now - promptStart

        var next = Int32(context.withLogits { argmax($0) })
        let decodeStart = clock.now
        for _ in 0 ..< decodeLength {
            try context.evaluate(CollectionOfOne(next))
            next = Int32(context.withLogits { argmax($0) })
        }
        let decodeTime = clock.now - decodeStart

        func seconds(_ d: Duration) -> Double {
            Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        }
        print(String(format: "benchmark %@: %d threads, load %.2f s, prompt %d tokens %.1f tok/s, decode %d tokens %.1f tok/s",
                     (path as NSString).lastPathComponent, threads, seconds(loadTime),
                     promptLength, Double(promptLength) / seconds(promptTime),
                     decodeLength, Double(decodeLength) / seconds(decodeTime)))
    }

    private func argmax(_ row: UnsafeBufferPointer<Float>) -> Int {
        var best = -Float.infinity, index = 0
        for (i, v) in row.enumerated() where v > best { (best, index) = (v, i) }
        return index
    }
}
