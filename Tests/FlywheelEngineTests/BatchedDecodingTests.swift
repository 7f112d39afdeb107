@testable import FlywheelEngine
import FlywheelKernels
import Foundation
import Synchronization
import XCTest

/// Continuous batching: sequences evaluated together in shared forward passes get exactly the logits (and so
/// the greedy tokens) they get alone, under joins, cancellations, prompt chunks mixed with decode rows and
/// passes split across entries.
final class BatchedDecodingTests: XCTestCase {
    /// Seeded prompts of different lengths within the vocabulary.
    private func prompts(vocabulary: Int, lengths: [Int], seed: UInt64) -> [[Int32]] {
        var rng = SplitMix64(seed: seed)
        return lengths.map { n in (0 ..< n).map { _ in Int32(rng.next() % UInt64(vocabulary)) } }
    }

    private func argmax(_ row: UnsafeBufferPointer<Float>) -> Int32 {
        var best = 0
        for i in 1 ..< row.count where row[i] > row[best] { best = i }
        return Int32(best)
    }

    /// Each sequence alone: its prompt, then greedy steps; the logits after the prompt and after every step.
    private func alone(model: LlamaModel, pool: ComputePool, prompt: [Int32], steps: Int) throws -> [[Float]] {
        let context = try InferenceContext(model: model, maxTokens: 64, pool: pool)
        try context.evaluate(prompt)
        var rows = [context.logitsArray()]
        for _ in 0 ..< steps {
            let next = context.withLogits(argmax)
            try context.evaluate([next])
            rows.append(context.logitsArray())
        }
        return rows
    }

    func testSequencesInOneBatchGetTheLogitsTheyGetAloneBitForBit() throws {
        for name in ModelReference.names {
            let model = try LlamaModel(path: ModelReference(name).path)
            let pool = ComputePool(threadCount: 2)
            defer { pool.shutdown() }
            let vocabulary = model.config.vocabularySize
            // Prompt lengths straddle the 5-row passes: entries split across passes, several per pass.
            let prompts = prompts(vocabulary: vocabulary, lengths: [7, 3, 12, 1], seed: 11)
            let steps = 6
            let expected = try prompts.map { try alone(model: model, pool: pool, prompt: $0, steps: steps) }

            let batch = InferenceBatch(model: model, pool: pool, rowCapacity: 5, maxPositions: 64)
            let contexts = try prompts.map { _ in try InferenceContext(model: model, maxTokens: 64, pool: pool) }
            var step = [Int](repeating: -1, count: prompts.count)  // -1: prompt not evaluated yet
            // Sequence 2 joins two steps late (its prompt is evaluated beside the others' decode rows);
            // sequence 1 is cancelled after three steps and the others go on without it.
            for round in 0 ..< steps + 3 {
                var entries: [(context: InferenceContext, tokens: ArraySlice<Int32>)] = []
                var members: [Int] = []
                for i in prompts.indices {
                    if i == 2, round < 2 { continue }
                    if i == 1, step[i] >= 3 { continue }
                    if step[i] >= steps { continue }
                    if step[i] < 0 {
                        entries.append((contexts[i], prompts[i][...]))
                    } else {
                        entries.append((contexts[i], [contexts[i].withLogits(argmax)][...]))
                    }
                    members.append(i)
                }
                if entries.isEmpty { break }
                try batch.evaluate(entries)
                for i in members {
                    step[i] += 1
                    XCTAssertEqual(contexts[i].logitsArray(), expected[i][step[i]], "\(name): sequence \(i), step \(step[i])")
                }
            }
            XCTAssertEqual(step, [steps, 3, steps, steps], name)
        }
    }

    func testABatchRefusesWhatItCannotEvaluateAndChangesNothing() throws {
        let model = try LlamaModel(path: ModelReference("model-llama-q8").path)
        let other = try LlamaModel(path: ModelReference("model-qwen2-q8").path)
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let batch = InferenceBatch(model: model, pool: pool, rowCapacity: 4, maxPositions: 16)
        let a = try InferenceContext(model: model, maxTokens: 16, pool: pool)
        let b = try InferenceContext(model: model, maxTokens: 16, pool: pool)
        try a.evaluate([1, 2, 3])
        let before = a.logitsArray()
        func refused(_ entries: [(context: InferenceContext, tokens: ArraySlice<Int32>)], _ message: String) {
            XCTAssertThrowsError(try batch.evaluate(entries), message)
            XCTAssertEqual(a.position, 3, message)
            XCTAssertEqual(b.position, 0, message)
            XCTAssertEqual(a.logitsArray(), before, message)
        }
        refused([(a, [4]), (b, [Int32(model.config.vocabularySize)])], "token out of range")
        refused([(a, [4]), (b, [])], "no tokens")
        refused([(a, [4]), (b, ArraySlice(repeating: 1, count: 17))], "context full")
        refused([(a, [4]), (a, [5])], "the same sequence twice")
        refused([(a, [4]), (try InferenceContext(model: other, maxTokens: 16, pool: pool), [1])], "another model")
        refused([(a, [4]), (try InferenceContext(model: model, maxTokens: 32, pool: pool), [1])], "too long for the batch")
    }

    func testACopiedPrefixGivesTheSameLogitsAsEvaluatingIt() throws {
        let model = try LlamaModel(path: ModelReference("model-qwen2-q8").path)
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let prompt = prompts(vocabulary: model.config.vocabularySize, lengths: [20], seed: 5)[0]
        let donor = try InferenceContext(model: model, maxTokens: 64, pool: pool)
        try donor.evaluate(prompt[..<13])
        let copy = try InferenceContext(model: model, maxTokens: 32, pool: pool)
        try copy.evaluate([9, 9, 9])  // overwritten by the copy
        try copy.copyPrefix(of: donor, count: 11)
        XCTAssertEqual(copy.position, 11)
        try copy.evaluate(prompt[11...])
        let fresh = try InferenceContext(model: model, maxTokens: 32, pool: pool)
        try fresh.evaluate(prompt)
        XCTAssertEqual(copy.logitsArray(), fresh.logitsArray())
        XCTAssertThrowsError(try copy.copyPrefix(of: donor, count: 14), "more than the donor holds")
    }

    // MARK: Through the scheduler

    /// A served model whose text stream spells out token ids, and which records how many sequences each
    /// batched step carried.
    final class RecordingModel: GenerationModel, @unchecked Sendable {
        let inner: LocalModel
        let widest = Mutex(0)
        /// The most KV cache bytes the sequences of one step held together.
        let mostHeld = Mutex(0)
        var name: String { inner.name }
        var contextLength: Int { inner.contextLength }
        var cacheBytesPerToken: Int { inner.cacheBytesPerToken }
        init(_ inner: LocalModel) { self.inner = inner }
        func makeSequence(capacity: Int) throws -> any TokenSequence { try inner.makeSequence(capacity: capacity) }
        func isEndOfGeneration(_ token: Int32) -> Bool { inner.isEndOfGeneration(token) }
        func makeTextStream() -> any TokenTextStream { Ids() }
        func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
            -> [UnsafeMutableBufferPointer<Float>] {
            widest.withLock { $0 = max($0, entries.count) }
            let logits = try inner.appendBatch(entries)
            let held = entries.reduce(0) { $0 + $1.sequence.reservedBytes }
            mostHeld.withLock { $0 = max($0, held) }
            return logits
        }
        struct Ids: TokenTextStream {
            mutating func append(_ token: Int32) -> String { "\(token) " }
            mutating func finish() -> String { "" }
        }
    }


    func testConcurrentGenerationsGiveTheTokensTheyGiveAloneUnderJoinsAndCancellations() throws {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let local = try LocalModel(name: "llama", path: ModelReference("model-llama-q8").path, pool: pool)
        let model = RecordingModel(local)
        let prompts = prompts(vocabulary: local.model.config.vocabularySize, lengths: [9, 4, 30, 6, 15], seed: 3)
        let lengths = [12, 20, 8, 16, 10]

        // Alone: one generation at a time, one slot.
        var expected: [String] = []
        do {
            var limits = InferenceScheduler.Limits()
            limits.slots = 1
            let scheduler = InferenceScheduler(limits: limits)
            defer { scheduler.shutdown() }
            for (prompt, length) in zip(prompts, lengths) {
                let log = EventLog()
                _ = try scheduler.submit(model: model, request: GenerationRequest.greedy(prompt, max: length), onEvent: log.handler)
                log.wait()
                XCTAssertNil(log.failure)
                expected.append(log.text)
            }
        }
        XCTAssertEqual(model.widest.withLock { $0 }, 1)

        // Together: four slots; two start, two join once the first have streamed, one is cancelled mid-way,
        // and the fifth takes its slot.
        var limits = InferenceScheduler.Limits()
        limits.slots = 4
        limits.promptChunk = 8  // the 30-token prompt takes several steps beside the decode rows
        let scheduler = InferenceScheduler(limits: limits)
        defer { scheduler.shutdown() }
        let logs = prompts.map { _ in EventLog() }
        let firstText = DispatchSemaphore(value: 0)
        let secondToken = DispatchSemaphore(value: 0)
        let seen = Mutex(0)
        var handles: [GenerationHandle] = []
        handles.append(try scheduler.submit(model: model, request: GenerationRequest.greedy(prompts[0], max: lengths[0])) { event in
            logs[0].handler(event)
            if case .text = event, seen.withLock({ $0 += 1; return $0 }) == 1 { firstText.signal() }
        })
        let cancelAfter = Mutex(0)
        handles.append(try scheduler.submit(model: model, request: GenerationRequest.greedy(prompts[1], max: lengths[1])) { event in
            logs[1].handler(event)
            if case .text = event, cancelAfter.withLock({ $0 += 1; return $0 }) == 2 { secondToken.signal() }
        })
        XCTAssertEqual(firstText.wait(timeout: .now() + 30), .success)
        for i in 2 ... 3 {
            handles.append(try scheduler.submit(model: model, request: GenerationRequest.greedy(prompts[i], max: lengths[i]), onEvent: logs[i].handler))
        }
        XCTAssertEqual(secondToken.wait(timeout: .now() + 30), .success)
        handles[1].cancel()
        handles.append(try scheduler.submit(model: model, request: GenerationRequest.greedy(prompts[4], max: lengths[4]), onEvent: logs[4].handler))
        for log in logs { log.wait() }

        for i in [0, 2, 3, 4] {
            XCTAssertNil(logs[i].failure, "generation \(i)")
            XCTAssertEqual(logs[i].text, expected[i], "generation \(i)")
        }
        XCTAssertEqual(logs[1].failure, .cancelled)
        XCTAssertTrue(expected[1].hasPrefix(logs[1].text), "the cancelled generation's tokens so far")
        XCTAssertGreaterThanOrEqual(model.widest.withLock { $0 }, 3, "steps carried several sequences")
    }

    func testAGenerationCopiesASharedPromptPrefixFromARunningOne() throws {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let local = try LocalModel(name: "qwen", path: ModelReference("model-qwen2-q8").path, pool: pool)
        let model = RecordingModel(local)
        let shared = prompts(vocabulary: local.model.config.vocabularySize, lengths: [24], seed: 8)[0]
        let first = shared + [5, 6]
        let second = shared + [7, 8, 9]

        var limits = InferenceScheduler.Limits()
        limits.slots = 2
        let scheduler = InferenceScheduler(limits: limits)
        defer { scheduler.shutdown() }
        let alone = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy(second, max: 6), onEvent: alone.handler)
        alone.wait()
        // Evict the idle sequence so only a running generation can lend the prefix.
        let other = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([1, 2], max: 1), onEvent: other.handler)
        other.wait()
        let filler = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([3, 4], max: 1), onEvent: filler.handler)
        filler.wait()

        let running = EventLog()
        let streaming = DispatchSemaphore(value: 0)
        let once = Mutex(false)
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy(first, max: 40)) { event in
            running.handler(event)
            if case .text = event, once.withLock({ first in defer { first = true }; return !first }) { streaming.signal() }
        }
        XCTAssertEqual(streaming.wait(timeout: .now() + 30), .success)
        let joined = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy(second, max: 6), onEvent: joined.handler)
        joined.wait()
        running.wait()
        XCTAssertEqual(joined.summary?.cachedPromptTokens, shared.count)
        XCTAssertEqual(joined.text, alone.text)
    }
}

/// KV cache memory by need: caches grow as sequences do (results unchanged), and the scheduler keeps all
/// sequences within a configured budget.
final class CacheBudgetTests: XCTestCase {
    func testAGrowingCacheGivesTheSameLogitsAsOneAllocatedUpFront() throws {
        let model = try LlamaModel(path: ModelReference("model-qwen2-q8").path)
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        var rng = SplitMix64(seed: 21)
        let tokens = (0 ..< 90).map { _ in Int32(rng.next(below: model.config.vocabularySize)) }
        let whole = try InferenceContext(model: model, maxTokens: 128, pool: pool, batchCapacity: 64, attentionTile: 8,
                                         attentionChunk: 64, initialCachePositions: 128)
        let growing = try InferenceContext(model: model, maxTokens: 128, pool: pool, batchCapacity: 64, attentionTile: 8,
                                           attentionChunk: 64, initialCachePositions: 8)
        let perPosition = InferenceContext.cacheBytesPerToken(model)
        XCTAssertEqual(whole.cacheBytes, 128 * perPosition)
        XCTAssertEqual(growing.cacheBytes, 8 * perPosition)
        // Chunks that cross several growths (8 -> 16 -> 32 -> 64 -> 128), and single tokens.
        var at = 0
        for chunk in [5, 9, 1, 20, 1, 1, 30, 23] {
            try whole.evaluate(tokens[at ..< at + chunk])
            try growing.evaluate(tokens[at ..< at + chunk])
            at += chunk
            XCTAssertEqual(growing.logitsArray(), whole.logitsArray(), "after \(at) tokens")
            XCTAssertGreaterThanOrEqual(growing.cacheBytes, at * perPosition)
        }
        XCTAssertEqual(at, tokens.count)
        XCTAssertEqual(growing.cacheBytes, 128 * perPosition, "never past the context")
        // An exact reservation allocates what was asked, not double.
        let reserved = try InferenceContext(model: model, maxTokens: 128, pool: pool, batchCapacity: 64, attentionTile: 8,
                                            attentionChunk: 64, initialCachePositions: 8)
        reserved.reserve(40)
        XCTAssertEqual(reserved.cacheBytes, 40 * perPosition)
    }


    func testGenerationsWaitForCacheAndOneThatCanNeverFitIsRefused() throws {
        let pool = ComputePool(threadCount: 2)
        defer { pool.shutdown() }
        let local = try LocalModel(name: "llama", path: ModelReference("model-llama-q8").path, contextLength: 64, pool: pool)
        let model = BatchedDecodingTests.RecordingModel(local)
        let perToken = model.cacheBytesPerToken
        XCTAssertGreaterThan(perToken, 0)
        var limits = InferenceScheduler.Limits()
        limits.slots = 4
        // Room for one generation of 4 + 12 tokens (and its cache's rounding to 8 positions), not two.
        limits.cacheBudgetBytes = 24 * perToken
        let scheduler = InferenceScheduler(limits: limits)
        defer { scheduler.shutdown() }

        XCTAssertThrowsError(try scheduler.submit(model: model, request: GenerationRequest.greedy([1, 2, 3, 4], max: nil)) { _ in }) { error in
            guard case GenerationError.cacheBudgetExceeded(let tokens, let needed, let budget)? = error as? GenerationError else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(tokens, 64, "no max_tokens: the whole context")
            XCTAssertEqual(needed, 64 * perToken)
            XCTAssertEqual(budget, 24 * perToken)
        }

        // Two fit the slots but not the budget together: the second starts only when the first has ended.
        let order = Mutex<[String]>([])
        let logs = [EventLog(), EventLog()]
        for (i, log) in logs.enumerated() {
            _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([Int32(1 + i), 2, 3, 4], max: 12)) { event in
                switch event {
                case .text: order.withLock { if $0.last != "text \(i)" { $0.append("text \(i)") } }
                case .finished, .failed: order.withLock { $0.append("end \(i)") }
                }
                log.handler(event)
            }
        }
        for log in logs { log.wait() }
        XCTAssertNil(logs[0].failure)
        XCTAssertNil(logs[1].failure)
        let events = order.withLock { $0 }
        let firstEnd = try XCTUnwrap(events.firstIndex(of: "end 0"))
        XCTAssertFalse(events[..<firstEnd].contains("text 1"), "the second waited for the first: \(events)")
        XCTAssertEqual(logs[1].summary?.completionTokens, 12)
        XCTAssertLessThanOrEqual(model.mostHeld.withLock { $0 }, 24 * perToken, "what the sequences held stayed in the budget")
        XCTAssertGreaterThanOrEqual(model.mostHeld.withLock { $0 }, 16 * perToken, "a generation holds its prompt + max_tokens")

        // A default max_tokens (not the client's) shrinks to what the budget holds instead of being refused.
        var open = GenerationRequest.greedy([1, 2, 3, 4], max: 4096)
        open.maxTokensFitsBudget = true
        let shrunk = EventLog()
        _ = try scheduler.submit(model: model, request: open, onEvent: shrunk.handler)
        shrunk.wait()
        XCTAssertNil(shrunk.failure)
        let summary = try XCTUnwrap(shrunk.summary)
        XCTAssertLessThanOrEqual(summary.completionTokens, 20, "24 positions of budget, 4 of them the prompt")
        if summary.finishReason == .length { XCTAssertEqual(summary.completionTokens, 20) }

        // With room for both they overlap.
        var roomy = limits
        roomy.cacheBudgetBytes = 64 * perToken
        let both = InferenceScheduler(limits: roomy)
        defer { both.shutdown() }
        let overlap = Mutex<[String]>([])
        let more = [EventLog(), EventLog()]
        for (i, log) in more.enumerated() {
            _ = try both.submit(model: model, request: GenerationRequest.greedy([Int32(1 + i), 2, 3, 4], max: 12)) { event in
                switch event {
                case .text: overlap.withLock { $0.append("text \(i)") }
                case .finished, .failed: overlap.withLock { $0.append("end \(i)") }
                }
                log.handler(event)
            }
        }
        for log in more { log.wait() }
        let seen = overlap.withLock { $0 }
        let end = try XCTUnwrap(seen.firstIndex { $0.hasPrefix("end") })
        XCTAssertTrue(seen[..<end].contains("text 0") && seen[..<end].contains("text 1"), "\(seen)")
    }
}
