@testable import FlywheelEngine
import FlywheelKernels
import XCTest

/// The forward pass (`InferenceContext`) against the float64 reference of scripts/engine/reference.py.
final class ModelInferenceTests: XCTestCase {
    private func context(
        _ reference: ModelReference, threads: Int = 2, maxTokens: Int = 64, batchCapacity: Int = 64
    ) throws -> InferenceContext {
        let model = try LlamaModel(path: reference.path)
        return try InferenceContext(
            model: model, maxTokens: maxTokens, pool: ComputePool(threadCount: threads), batchCapacity: batchCapacity)
    }

    private func rows(_ flat: [Float], width: Int) -> [[Float]] {
        stride(from: 0, to: flat.count, by: width).map { Array(flat[$0 ..< $0 + width]) }
    }

    private func maxDifference(_ a: [Float], _ b: [Float]) -> Float {
        zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
    }

    // MARK: Against the reference

    func testLogitsAtEveryPromptPositionMatchFloat64Reference() throws {
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            let context = try context(reference)
            try context.evaluate(reference.tokens, allLogits: true)
            let vocab = context.model.config.vocabularySize
            XCTAssertEqual(context.logitRowCount, reference.tokens.count)
            let got = rows(context.logitsArray(), width: vocab)
            let tolerance = reference.tolerance
            var worst: Float = 0
            var argmaxChecked = 0
            for (position, (mine, expected)) in zip(got, reference.logits).enumerated() {
                XCTAssertEqual(mine.count, expected.count)
                worst = max(worst, maxDifference(mine, expected))
                // A winner that leads by more than twice the error bound cannot lose to rounding.
                if ModelReference.margin(expected) > 2 * tolerance {
                    argmaxChecked += 1
                    XCTAssertEqual(ModelReference.argmax(mine), ModelReference.argmax(expected),
                                   "\(name) position \(position)")
                }
            }
            XCTAssertLessThanOrEqual(worst, tolerance, "\(name): max |logit - reference|")
            XCTAssertGreaterThanOrEqual(argmaxChecked, 3, "\(name): too few clear margins to check")
        }
    }

    func testLogitsMatchReferenceWithQ8RoundingEmulatedToFloatPrecision() throws {
        // The difference from the exact reference is all Q8_0 rounding: with that rounding emulated, the
        // only differences left are float32 vs float64 sums and the odd activation landing on the other
        // side of a rounding boundary.
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            let context = try context(reference)
            try context.evaluate(reference.tokens, allLogits: true)
            let vocab = context.model.config.vocabularySize
            let tail = rows(context.logitsArray(), width: vocab).suffix(reference.emulatedTailLogits.count)
            let worst = zip(tail, reference.emulatedTailLogits).map { maxDifference($0, $1) }.max()!
            XCTAssertLessThanOrEqual(worst, reference.tolerance / 100, name)
        }
    }

    func testGreedyDecodingReproducesReferenceTokens() throws {
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            // The fixture is only a fair test if no greedy step is a near tie for a Q8_0 engine.
            XCTAssertGreaterThan(reference.generatedMargins.min()!, 2 * reference.tolerance / 3, name)
            let context = try context(reference)
            try context.evaluate(reference.tokens)
            var generated: [Int32] = []
            for _ in reference.generated {
                let next = Int32(context.withLogits { ModelReference.argmax($0) })
                generated.append(next)
                try context.evaluate(CollectionOfOne(next))
            }
            XCTAssertEqual(generated, reference.generated, name)
        }
    }

    // MARK: Consistency of the engine with itself

    func testBatchedPromptMatchesTokenByTokenEvaluation() throws {
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            let batched = try context(reference)
            try batched.evaluate(reference.tokens, allLogits: true)
            let all = batched.logitsArray()
            let vocab = batched.model.config.vocabularySize

            let single = try context(reference)
            for (position, token) in reference.tokens.enumerated() {
                try single.evaluate([token])
                let expected = Array(all[position * vocab ..< (position + 1) * vocab])
                XCTAssertLessThanOrEqual(maxDifference(single.logitsArray(), expected), 1e-3, "\(name) position \(position)")
            }
            XCTAssertEqual(single.position, batched.position)
        }
    }

    func testPromptLongerThanBatchCapacityIsSplitWithoutChangingLogits() throws {
        let reference = try ModelReference("model-llama-q8")
        let whole = try context(reference)
        try whole.evaluate(reference.tokens, allLogits: true)
        let chunked = try context(reference, batchCapacity: 5)
        try chunked.evaluate(reference.tokens, allLogits: true)
        XCTAssertLessThanOrEqual(maxDifference(whole.logitsArray(), chunked.logitsArray()), 1e-3)
        XCTAssertEqual(chunked.position, reference.tokens.count)
    }

    func testLastTokenLogitsEqualLastRowOfAllLogits() throws {
        let reference = try ModelReference("model-qwen2-q8")
        let context = try context(reference)
        try context.evaluate(reference.tokens, allLogits: true)
        let all = context.logitsArray()
        try context.truncate(to: 0)
        try context.evaluate(reference.tokens)
        XCTAssertEqual(context.logitRowCount, 1)
        XCTAssertEqual(context.logitsArray(), Array(all.suffix(context.model.config.vocabularySize)))
    }

    func testTruncateThenReevaluateReproducesLogits() throws {
        let reference = try ModelReference("model-qwen2-q8")
        let context = try context(reference)
        try context.evaluate(reference.tokens)
        let firstLogits = context.logitsArray()
        // Replace the last four tokens with others, then go back and evaluate the original ones again.
        try context.truncate(to: 8)
        XCTAssertEqual(context.position, 8)
        try context.evaluate([Int32](repeating: 5, count: 4))
        XCTAssertNotEqual(context.logitsArray(), firstLogits)
        try context.truncate(to: 8)
        try context.evaluate(reference.tokens[8...])
        XCTAssertEqual(context.position, reference.tokens.count)
        XCTAssertLessThanOrEqual(maxDifference(context.logitsArray(), firstLogits), 1e-3)
    }

    func testOneAndTwoThreadsGiveTheSameLogits() throws {
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            var results: [[Float]] = []
            for threads in [1, 2] {
                let context = try context(reference, threads: threads)
                try context.evaluate(reference.tokens, allLogits: true)
                var logits = context.logitsArray()
                try context.evaluate([reference.generated[0]])
                logits += context.logitsArray()
                results.append(logits)
            }
            // Each output row is computed by exactly one thread in the same order, so bit-identical.
            XCTAssertEqual(results[0], results[1], name)
        }
    }

    func testRowGroupsGiveTheSameLogitsAsRows() throws {
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            var results: [[Float]] = []
            for layout in [Q8Layout.rows, .rowGroups] {
                let context = try InferenceContext(
                    model: LlamaModel(path: reference.path, layout: layout), maxTokens: 64,
                    pool: ComputePool(threadCount: 2), batchCapacity: 64)
                try context.evaluate(reference.tokens, allLogits: true)  // matMul
                var logits = context.logitsArray()
                try context.evaluate([reference.generated[0]])  // matVec
                logits += context.logitsArray()
                results.append(logits)
            }
            if Kernels.activePath == .avx512vnni {
                // Rows run on the AVX-512 kernels, row groups on the AVX2 ones: the same sums in another order.
                XCTAssertLessThan(maxDifference(results[0], results[1]), 1e-3, name)
            } else {
                // The same kernel family sums every output in the same order in either layout.
                XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern), name)
            }
        }
    }

    func testAttentionTilesAndChunksDoNotChangeTheLogits() throws {
        // Tiles of 3 tokens and chunks of 8 positions split the fixtures' short prompts the way the
        // defaults (8 and 64) split long ones.
        for name in ModelReference.names {
            let reference = try ModelReference(name)
            var results: [[Float]] = []
            for (tile, chunk) in [(8, 64), (3, 8), (1, 16)] {
                let context = try InferenceContext(
                    model: LlamaModel(path: reference.path), maxTokens: 64, pool: ComputePool(threadCount: 2),
                    batchCapacity: 64, attentionTile: tile, attentionChunk: chunk)
                try context.evaluate(reference.tokens, allLogits: true)
                var logits = context.logitsArray()
                try context.evaluate([reference.generated[0]])
                logits += context.logitsArray()
                results.append(logits)
            }
            XCTAssertEqual(results[0], results[1], "\(name): tile 3, chunk 8")
            XCTAssertEqual(results[0], results[2], "\(name): tile 1, chunk 16")
        }
    }

    func testLongSequenceAgreesAcrossBatchingAndThreadCounts() throws {
        // 200 positions: several attention chunks and prompt batches, each batch starting mid-chunk.
        let reference = try ModelReference("model-qwen2-q8")
        var generator = SplitMix64(seed: 7)
        let tokens = (0 ..< 200).map { _ in Int32(generator.next() % 320) }
        var batched: [[Float]] = []
        for threads in [1, 2] {
            let context = try context(reference, threads: threads, maxTokens: 256, batchCapacity: 48)
            try context.evaluate(tokens, allLogits: true)
            batched.append(context.logitsArray())
        }
        XCTAssertEqual(batched[0], batched[1])

        let single = try context(reference, maxTokens: 256)
        let vocab = single.model.config.vocabularySize
        var worst: Float = 0
        for (position, token) in tokens.enumerated() {
            try single.evaluate([token])
            worst = max(worst, maxDifference(single.logitsArray(), Array(batched[0][position * vocab ..< (position + 1) * vocab])))
        }
        XCTAssertLessThanOrEqual(worst, 1e-3)
    }

    func testResetStartsANewSequence() throws {
        let reference = try ModelReference("model-llama-q8")
        let context = try context(reference)
        try context.evaluate(reference.tokens)
        let first = context.logitsArray()
        context.reset()
        XCTAssertEqual(context.position, 0)
        XCTAssertEqual(context.logitRowCount, 0)
        try context.evaluate(reference.tokens)
        XCTAssertEqual(context.logitsArray(), first)
    }

    // MARK: Errors

    func testFullContextThrowsAndKeepsTheSequence() throws {
        let reference = try ModelReference("model-llama-q8")
        let context = try context(reference, maxTokens: 14)
        try context.evaluate(reference.tokens)  // 12 of 14
        let logits = context.logitsArray()
        XCTAssertThrowsError(try context.evaluate([1, 2, 3])) { error in
            XCTAssertEqual(error as? InferenceError, .contextFull(position: 12, adding: 3, capacity: 14))
        }
        XCTAssertEqual(context.position, 12)
        XCTAssertEqual(context.logitsArray(), logits)
        try context.evaluate([1, 2])
        XCTAssertEqual(context.position, 14)
        XCTAssertThrowsError(try context.evaluate([1])) { error in
            XCTAssertEqual(error as? InferenceError, .contextFull(position: 14, adding: 1, capacity: 14))
        }
    }

    func testTokenOutsideTheVocabularyIsRejectedBeforeAnythingRuns() throws {
        let reference = try ModelReference("model-llama-q8")
        let context = try context(reference)
        XCTAssertThrowsError(try context.evaluate([1, 320])) { error in
            XCTAssertEqual(error as? InferenceError, .tokenOutOfRange(token: 320, vocabularySize: 320))
        }
        XCTAssertThrowsError(try context.evaluate([-1])) { error in
            XCTAssertEqual(error as? InferenceError, .tokenOutOfRange(token: -1, vocabularySize: 320))
        }
        XCTAssertThrowsError(try context.evaluate([Int32]())) { error in
            XCTAssertEqual(error as? InferenceError, .noTokens)
        }
        XCTAssertEqual(context.position, 0)
    }

    func testCapacityAndTruncationOutOfRangeAreErrors() throws {
        let reference = try ModelReference("model-llama-q8")
        let model = try LlamaModel(path: reference.path)
        let pool = ComputePool(threadCount: 1)
        XCTAssertThrowsError(try InferenceContext(model: model, maxTokens: 0, pool: pool)) { error in
            XCTAssertEqual(error as? InferenceError, .invalidCapacity(requested: 0, contextLength: 256))
        }
        XCTAssertThrowsError(try InferenceContext(model: model, maxTokens: 257, pool: pool))
        let context = try InferenceContext(model: model, maxTokens: 256, pool: pool)
        try context.evaluate([1, 2, 3])
        XCTAssertThrowsError(try context.truncate(to: 4)) { error in
            XCTAssertEqual(error as? InferenceError, .invalidTruncation(to: 4, position: 3))
        }
        XCTAssertThrowsError(try context.truncate(to: -1))
        XCTAssertEqual(context.position, 3)
    }
}
