@testable import FlywheelEngine
import Dispatch
import FlywheelKernels
import Foundation
import Synchronization
import XCTest

/// `LocalInference.embed`: one mean-pooled hidden state per input, computed on the scheduler thread one input
/// per task, so generations keep stepping between inputs; refusals before queueing; cancellation and shutdown.
final class LocalInferenceEmbeddingTests: XCTestCase {
    /// Waits for one completion.
    private final class Outcome: Sendable {
        private let result = Mutex<Result<[[Float]], GenerationError>?>(nil)
        private let done = DispatchSemaphore(value: 0)
        let finishedAt = Atomic<UInt64>(0)

        var handler: @Sendable (Result<[[Float]], GenerationError>) -> Void {
            { [self] r in
                result.withLock { $0 = r }
                finishedAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
                done.signal()
            }
        }

        func wait(_ seconds: Double = 60) -> Result<[[Float]], GenerationError>? {
            guard done.wait(timeout: .now() + seconds) == .success else { return nil }
            return result.withLock { $0 }
        }
    }

    private func inference(_ name: String = "model-llama-q8", limits: InferenceScheduler.Limits = .init()) throws -> LocalInference {
        let reference = try ModelReference(name)
        return try LocalInference(models: [LocalModelSpec(name: "m", path: reference.path)], threads: 1, limits: limits)
    }

    func testEachVectorIsTheMeanPooledHiddenStateOfItsInput() throws {
        let reference = try ModelReference("model-llama-q8")
        let inference = try inference()
        defer { inference.shutdown() }
        let model = inference.models[0]
        // The last input fills the whole context: an embedding generates nothing, so it fits.
        let inputs: [[Int32]] = [reference.tokens, [1, 2, 3], Array(reference.tokens.prefix(5)), [7],
                                 [Int32](repeating: 9, count: model.contextLength)]
        let outcome = Outcome()
        try inference.embed(model: model, inputs: inputs, completion: outcome.handler)
        let vectors = try XCTUnwrap(outcome.wait()).get()
        XCTAssertEqual(vectors.count, inputs.count)
        // Direct calls, in contexts of each input's size on a pool of the same width.
        let pool = ComputePool(threadCount: 1)
        defer { pool.shutdown() }
        for (i, tokens) in inputs.enumerated() {
            let context = try InferenceContext(model: model.model, maxTokens: tokens.count, pool: pool)
            let expected = try context.meanPooledHiddenState(tokens)
            XCTAssertEqual(vectors[i].count, model.model.config.embeddingLength)
            XCTAssertEqual(vectors[i].map(\.bitPattern), expected.map(\.bitPattern), "input \(i)")
            XCTAssertEqual(vectors[i].reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-4)
        }
        XCTAssertNotEqual(vectors[0], vectors[1])
    }

    func testRefusalsQueueNothing() throws {
        let inference = try inference()
        defer { inference.shutdown() }
        let model = inference.models[0]
        func refusal(_ inputs: [[Int32]]) -> GenerationError? {
            do {
                try inference.embed(model: model, inputs: inputs) { _ in XCTFail("a refused batch completes nothing") }
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(refusal([]), .emptyPrompt)
        XCTAssertEqual(refusal([[1], []]), .emptyPrompt)
        XCTAssertEqual(refusal([[Int32](repeating: 1, count: model.contextLength + 1)]),
                       .contextLengthExceeded(promptTokens: model.contextLength + 1, contextLength: model.contextLength))
        guard case .evaluationFailed(let message)? = refusal([[1, Int32(model.model.config.vocabularySize)]]) else {
            return XCTFail("a token outside the vocabulary is refused")
        }
        XCTAssertTrue(message.contains("\(model.model.config.vocabularySize)"), message)
        inference.shutdown()
        XCTAssertEqual(refusal([[1]]), .shuttingDown)
    }

    /// A generation submitted with a long batch finishes long before the batch does: it takes a step between
    /// every two inputs instead of waiting for the whole batch.
    func testGenerationsKeepSteppingBetweenInputs() throws {
        let reference = try ModelReference("model-llama-q8")
        let inference = try inference()
        defer { inference.shutdown() }
        let model = inference.models[0]
        var sampling = SamplingParameters()
        sampling.temperature = 0
        let generated = DispatchSemaphore(value: 0)
        let generationEnd = Atomic<UInt64>(0)
        let outcome = Outcome()
        let hold = DispatchSemaphore(value: 0)
        // Both are queued while the scheduler is held, so they start together.
        try inference.perform { _ in hold.wait() }
        _ = try inference.submit(model: model, request: GenerationRequest(promptTokens: [1, 2, 3], maxTokens: 4, sampling: sampling)) { event in
            switch event {
            case .finished, .failed:
                generationEnd.store(DispatchTime.now().uptimeNanoseconds, ordering: .relaxed)
                generated.signal()
            case .text: break
            }
        }
        try inference.embed(model: model, inputs: Array(repeating: reference.tokens, count: 60), completion: outcome.handler)
        hold.signal()
        XCTAssertEqual(generated.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(try XCTUnwrap(outcome.wait()).get().count, 60)
        XCTAssertLessThan(generationEnd.load(ordering: .relaxed), outcome.finishedAt.load(ordering: .relaxed))
    }

    func testCancelStopsTheBatchBeforeItsNextInput() throws {
        let reference = try ModelReference("model-llama-q8")
        let inference = try inference()
        defer { inference.shutdown() }
        let hold = DispatchSemaphore(value: 0)
        try inference.perform { _ in hold.wait() }
        let outcome = Outcome()
        let handle = try inference.embed(model: inference.models[0], inputs: Array(repeating: reference.tokens, count: 500),
                                         completion: outcome.handler)
        handle.cancel()
        XCTAssertTrue(handle.isCancelled)
        hold.signal()
        guard case .failure(.cancelled)? = outcome.wait(10) else { return XCTFail("cancelled") }
    }

    func testShutdownEndsARunningBatch() throws {
        let reference = try ModelReference("model-llama-q8")
        let inference = try inference()
        let outcome = Outcome()
        try inference.embed(model: inference.models[0], inputs: Array(repeating: reference.tokens, count: 10_000), completion: outcome.handler)
        Thread.sleep(forTimeInterval: 0.05)
        inference.shutdown()
        guard case .failure(.shuttingDown)? = outcome.wait(10) else { return XCTFail("shutting down") }
    }

    /// A batch holds one place in the queue of tasks at a time; when other work fills the queue between two of its
    /// inputs, it waits for room and still completes.
    func testAFullQueueRefusesNewBatchesButNeverFailsOneHalfDone() throws {
        let reference = try ModelReference("model-llama-q8")
        var limits = InferenceScheduler.Limits()
        limits.maxQueued = 2
        let inference = try inference(limits: limits)
        defer { inference.shutdown() }
        let model = inference.models[0]
        let hold = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        try inference.perform { _ in holding.signal(); hold.wait() }
        XCTAssertEqual(holding.wait(timeout: .now() + 10), .success)
        let first = Outcome()
        let second = Outcome()
        try inference.embed(model: model, inputs: Array(repeating: reference.tokens, count: 20), completion: first.handler)
        try inference.embed(model: model, inputs: Array(repeating: reference.tokens, count: 20), completion: second.handler)
        XCTAssertThrowsError(try inference.embed(model: model, inputs: [[1]]) { _ in }) {
            XCTAssertEqual($0 as? GenerationError, .queueFull(limit: 2))
        }
        // While the batches run, keep the queue full from outside now and then.
        let stop = Atomic<Bool>(false)
        let filler = Thread {
            while !stop.load(ordering: .relaxed) {
                try? inference.perform { _ in }
                Thread.sleep(forTimeInterval: 0.0005)
            }
        }
        filler.start()
        hold.signal()
        XCTAssertEqual(try XCTUnwrap(first.wait()).get().count, 20)
        XCTAssertEqual(try XCTUnwrap(second.wait()).get().count, 20)
        stop.store(true, ordering: .relaxed)
    }
}
