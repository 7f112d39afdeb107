@testable import FlywheelEngine
import FlywheelKernels
import Foundation
import Synchronization
import XCTest

/// Review of continuous batching, the KV cache budget and reloads, from the hostile side: what the scheduler
/// promises about memory and model identity, checked where a careless step would break it.
final class BatchingHostileTests: XCTestCase {
    /// A `LocalModel` seen through the `GenerationModel` seam, remembering (weakly) every sequence it made, so a
    /// test can add up the KV cache all live sequences (running and idle) hold at every step.
    final class MeasuringModel: GenerationModel, @unchecked Sendable {
        let inner: LocalModel
        private final class WeakSequence { weak var sequence: (any TokenSequence & AnyObject)?; init(_ s: any TokenSequence) { sequence = s } }
        // Touched on the scheduler thread only (makeSequence and appendBatch); read after the scheduler is done.
        private var made: [WeakSequence] = []
        /// The most bytes all live sequences held together when a step ran.
        let mostHeld = Mutex(0)
        var name: String { inner.name }
        var contextLength: Int { inner.contextLength }
        var cacheBytesPerToken: Int { inner.cacheBytesPerToken }
        init(_ inner: LocalModel) { self.inner = inner }
        func makeSequence(capacity: Int) throws -> any TokenSequence {
            let sequence = try inner.makeSequence(capacity: capacity)
            made.append(WeakSequence(sequence))
            return sequence
        }
        func isEndOfGeneration(_ token: Int32) -> Bool { inner.isEndOfGeneration(token) }
        func makeTextStream() -> any TokenTextStream { inner.makeTextStream() }
        func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
            -> [UnsafeMutableBufferPointer<Float>] {
            let logits = try inner.appendBatch(entries)
            let held = made.reduce(0) { $0 + ($1.sequence?.reservedBytes ?? 0) }
            mostHeld.withLock { $0 = max($0, held) }
            return logits
        }
    }

    /// `inference.kv_cache_mb` promises "bytes of KV cache all sequences together may hold" (running and idle).
    /// Admission counts each generation's need (prompt + max_tokens); what the sequences really allocate (their
    /// first allocation, growth, a reused idle cache) must stay within it too. (Passes since 3089f1e: fresh
    /// sequences used to start at 256 positions whatever their need, 4x this budget here.)
    func testTheCacheBudgetBoundsWhatShortGenerationsHold() throws {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let local = try LocalModel(name: "qwen", path: ModelReference("model-qwen2-q8").path, pool: pool)
        XCTAssertGreaterThanOrEqual(local.contextLength, 256)
        let model = MeasuringModel(local)
        let perToken = model.cacheBytesPerToken
        var limits = InferenceScheduler.Limits()
        limits.slots = 4
        // Four generations of 4 prompt tokens + 8 new ones need 4 x 16 positions (whole blocks of 8): within 80.
        let budget = 80 * perToken
        limits.cacheBudgetBytes = budget
        let scheduler = InferenceScheduler(limits: limits)
        defer { scheduler.shutdown() }
        let logs = (0 ..< 4).map { _ in EventLog() }
        for (i, log) in logs.enumerated() {
            _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([Int32(10 + i), 11, 12, 13], max: 8),
                                     onEvent: log.handler)
        }
        for log in logs { log.wait() }
        for log in logs { XCTAssertNil(log.failure) }
        let held = model.mostHeld.withLock { $0 }
        XCTAssertLessThanOrEqual(held, budget,
                                 "sequences held \(held / perToken) positions of KV cache; the budget is \(budget / perToken)")
    }

    /// After a reload replaces a model, its idle sequences stay in the scheduler's idle pool, each holding an
    /// `InferenceContext` and so the old `LlamaModel` (for a requantized K-quant file, a whole heap copy of the
    /// weights) until enough fresh sequences push them out, which under light traffic never happens.
    func testAReplacedModelIsFreedOnceItsGenerationsEnd() throws {
        let qwen = try ModelReference("model-qwen2-q8")
        var limits = InferenceScheduler.Limits()
        limits.slots = 4
        let inference = try LocalInference(models: [LocalModelSpec(name: "a", path: qwen.path)], threads: 1, limits: limits)
        defer { inference.shutdown() }
        weak var oldWeights: LlamaModel?
        do {
            let old = try XCTUnwrap(inference.model(named: "a"))
            oldWeights = old.model
            let log = EventLog()
            _ = try inference.submit(model: old, request: GenerationRequest.greedy([1, 2, 3], max: 4), onEvent: log.handler)
            log.wait()
            XCTAssertNil(log.failure)
        }
        _ = try inference.reload([LocalModelSpec(name: "a", path: qwen.path, contextLength: 128)])
        let new = try XCTUnwrap(inference.model(named: "a"))
        // Several requests on the new model, one after another (each ends before the next starts, so the first
        // one's job has left the scheduler by the end).
        for i in 0 ..< 3 {
            let log = EventLog()
            _ = try inference.submit(model: new, request: GenerationRequest.greedy([Int32(4 + i), 5, 6], max: 4), onEvent: log.handler)
            log.wait()
            XCTAssertNil(log.failure)
        }
        XCTAssertNil(oldWeights, "the replaced model's weights are still alive (pinned by its idle KV caches)")
    }

    /// Idle sequences are keyed by `ObjectIdentifier(model)`, which does not keep the model alive. Once a replaced
    /// model is freed, a model loaded later can get the same address, and then takes the dead model's idle
    /// sequence: `InferenceBatch` refuses it ("a sequence of another model") and every generation of that model in
    /// the step fails with evaluationFailed; the poisoned sequence goes back to the idle pool under the new key.
    /// (Through the daemon: a few SIGHUPs that replace a model make most of its requests 500; see
    /// Tests/E2E/test_batching_hostile.py.)
    func testAModelLoadedAtADeadModelsAddressDoesNotInheritItsIdleSequences() throws {
        let qwen = try ModelReference("model-qwen2-q8")
        var limits = InferenceScheduler.Limits()
        limits.slots = 4
        let inference = try LocalInference(models: [LocalModelSpec(name: "a", path: qwen.path)], threads: 1, limits: limits)
        defer { inference.shutdown() }
        var failures: [String] = []
        for round in 0 ..< 20 {
            let model = try XCTUnwrap(inference.model(named: "a"))
            let log = EventLog()
            _ = try inference.submit(model: model, request: GenerationRequest.greedy([1, 2, 3], max: 2), onEvent: log.handler)
            log.wait()
            if let failure = log.failure { failures.append("round \(round): \(failure)") }
            // Replace the model (context 128 <-> 120), as a SIGHUP with an edited context_length does.
            _ = try inference.reload([LocalModelSpec(name: "a", path: qwen.path, contextLength: round % 2 == 0 ? 120 : 128)])
        }
        XCTAssertEqual(failures, [])
    }
}
