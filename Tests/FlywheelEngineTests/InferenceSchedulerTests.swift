import Foundation
import Synchronization
import XCTest
@testable import FlywheelEngine

/// A stand-in model for scheduler tests: after token t it predicts t + 1 (mod 16) with certainty,
/// token 15 ends the generation, and token t decodes to "t<t> ". It counts the tokens it evaluates
/// and can be held at a gate to keep a slot busy.
final class CountingModel: GenerationModel, @unchecked Sendable {
    // Mutable state is behind `state`; everything else is immutable.
    let name = "counting"
    let contextLength: Int
    let state = Mutex<(evaluated: Int, sequences: Int)>((0, 0))
    let gate = NSCondition()
    nonisolated(unsafe) var gateOpen = true

    init(contextLength: Int = 64) { self.contextLength = contextLength }

    func makeSequence(capacity: Int) throws -> any TokenSequence {
        state.withLock { $0.sequences += 1 }
        return Sequence(model: self, capacity: capacity)
    }
    func isEndOfGeneration(_ token: Int32) -> Bool { token == 15 }
    func makeTextStream() -> any TokenTextStream { Stream() }

    func close() { gate.lock(); gateOpen = false; gate.unlock() }
    func open() { gate.lock(); gateOpen = true; gate.broadcast(); gate.unlock() }

    struct Stream: TokenTextStream {
        mutating func append(_ token: Int32) -> String { "t\(token) " }
        mutating func finish() -> String { "" }
    }

    final class Sequence: TokenSequence {
        let model: CountingModel
        let capacity: Int
        var tokens: [Int32] = []
        var logits = [Float](repeating: 0, count: 16)

        init(model: CountingModel, capacity: Int) { self.model = model; self.capacity = capacity }
        func truncate(to count: Int) { tokens.removeLast(tokens.count - count) }
        func append(_ new: ArraySlice<Int32>) throws -> UnsafeMutableBufferPointer<Float> {
            model.gate.lock()
            while !model.gateOpen { model.gate.wait() }
            model.gate.unlock()
            tokens.append(contentsOf: new)
            model.state.withLock { $0.evaluated += new.count }
            for i in 0 ..< 16 { logits[i] = 0 }
            logits[Int((tokens.last! + 1) % 16)] = 20
            return logits.withUnsafeMutableBufferPointer { $0 }  // stable: the array is never resized
        }
    }
}

/// Collects one generation's events and waits for its end.
final class EventLog: Sendable {
    let events = Mutex<[GenerationEvent]>([])
    let done = DispatchSemaphore(value: 0)

    var handler: @Sendable (GenerationEvent) -> Void {
        { [self] event in
            events.withLock { $0.append(event) }
            switch event {
            case .finished, .failed: done.signal()
            default: break
            }
        }
    }

    func wait(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "generation did not end", file: file, line: line)
    }
    var text: String {
        events.withLock { $0.compactMap { if case .text(let t) = $0 { return t }; return nil }.joined() }
    }
    var summary: GenerationSummary? {
        events.withLock { $0.compactMap { if case .finished(let s) = $0 { return s }; return nil }.first }
    }
    var failure: GenerationError? {
        events.withLock { $0.compactMap { if case .failed(let e) = $0 { return e }; return nil }.first }
    }
}

final class InferenceSchedulerTests: XCTestCase {

    func testGeneratesUntilTheEndTokenAndReportsUsage() throws {
        let scheduler = InferenceScheduler()
        let model = CountingModel()
        let log = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([1, 2, 10]), onEvent: log.handler)
        log.wait()
        XCTAssertEqual(log.text, "t11 t12 t13 t14 ")
        XCTAssertEqual(log.summary?.finishReason, .stop)
        XCTAssertEqual(log.summary?.promptTokens, 3)
        XCTAssertEqual(log.summary?.completionTokens, 4)
    }

    func testMaxTokensEndsWithLength() throws {
        let scheduler = InferenceScheduler()
        let log = EventLog()
        _ = try scheduler.submit(model: CountingModel(), request: GenerationRequest.greedy([0], max: 3), onEvent: log.handler)
        log.wait()
        XCTAssertEqual(log.text, "t1 t2 t3 ")
        XCTAssertEqual(log.summary?.finishReason, .length)
        XCTAssertEqual(log.summary?.completionTokens, 3)
    }

    func testStopStringEndsTheGenerationWithoutBeingSent() throws {
        let scheduler = InferenceScheduler()
        let log = EventLog()
        _ = try scheduler.submit(model: CountingModel(), request: GenerationRequest.greedy([0], stop: ["3 t4"]), onEvent: log.handler)
        log.wait()
        XCTAssertEqual(log.text, "t1 t2 t")
        XCTAssertEqual(log.summary?.finishReason, .stop)
    }

    func testFullContextEndsWithLength() throws {
        let scheduler = InferenceScheduler()
        let log = EventLog()
        // Capacity 6 and a 4-token prompt: two tokens are generated, the second fills the context.
        _ = try scheduler.submit(model: CountingModel(contextLength: 6), request: GenerationRequest.greedy([0, 0, 0, 0]), onEvent: log.handler)
        log.wait()
        XCTAssertEqual(log.summary?.finishReason, .length)
        XCTAssertEqual(log.summary?.completionTokens, 2)
    }

    func testPromptThatFillsTheContextIsRefusedUpFront() {
        let scheduler = InferenceScheduler()
        XCTAssertThrowsError(try scheduler.submit(model: CountingModel(contextLength: 4), request: GenerationRequest.greedy([1, 2, 3, 4]), onEvent: { _ in })) {
            XCTAssertEqual($0 as? GenerationError, .contextLengthExceeded(promptTokens: 4, contextLength: 4))
        }
    }

    func testEmptyPromptIsRefusedUpFrontAsEmpty() {
        let scheduler = InferenceScheduler()
        XCTAssertThrowsError(try scheduler.submit(model: CountingModel(), request: GenerationRequest.greedy([]), onEvent: { _ in })) {
            XCTAssertEqual($0 as? GenerationError, .emptyPrompt)
        }
    }

    func testQueueBeyondTheLimitIsRefused() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 1
        limits.maxQueued = 1
        let scheduler = InferenceScheduler(limits: limits)
        let model = CountingModel()
        model.close()
        let first = EventLog(), second = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: first.handler)
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: second.handler)
        XCTAssertThrowsError(try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: { _ in })) {
            XCTAssertEqual($0 as? GenerationError, .queueFull(limit: 1))
        }
        model.open()
        first.wait(); second.wait()
        XCTAssertEqual(second.summary?.finishReason, .stop)
    }

    func testCancelStopsARunningGeneration() throws {
        let scheduler = InferenceScheduler()
        let model = CountingModel(contextLength: 100_000)
        let log = EventLog()
        // Never ends on its own: a huge context and no max, but token 15 ends... so start past it with a cycle-free prompt.
        var p = SamplingParameters()
        p.temperature = 0
        p.logitBias = [15: -1000]  // the end token can never win: runs until cancelled
        let handle = try scheduler.submit(model: model, request: GenerationRequest(promptTokens: [0], sampling: p), onEvent: log.handler)
        while model.state.withLock({ $0.evaluated }) < 50 { usleep(1000) }
        handle.cancel()
        log.wait()
        XCTAssertEqual(log.failure, .cancelled)
    }

    func testCancelledQueuedGenerationsLeaveTheQueueAtOnce() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 2
        limits.maxQueued = 32
        let scheduler = InferenceScheduler(limits: limits)
        let model = CountingModel()
        model.close()  // the two running generations stay in their first evaluation until opened
        let running = [EventLog(), EventLog()]
        for log in running { _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: log.handler) }
        let queued = (0 ..< 32).map { _ in EventLog() }
        var handles: [GenerationHandle] = []
        for log in queued { handles.append(try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: log.handler)) }
        XCTAssertThrowsError(try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: { _ in })) {
            XCTAssertEqual($0 as? GenerationError, .queueFull(limit: 32))
        }

        // Their clients leave: each is reported cancelled before `cancel` returns, while both slots stay busy.
        for (handle, log) in zip(handles, queued) {
            handle.cancel()
            XCTAssertEqual(log.failure, .cancelled)
        }
        let counts = scheduler.counts
        XCTAssertEqual(counts.active + counts.queued, 2, "only the running generations remain")

        // Their places are free for fresh requests at once.
        let fresh = (0 ..< 32).map { _ in EventLog() }
        for log in fresh { _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0], max: 1), onEvent: log.handler) }

        model.open()
        for log in running + fresh { log.wait() }
        XCTAssertEqual(fresh.compactMap { $0.summary?.finishReason }.count, 32)
        handles[0].cancel()  // cancelling again reports nothing more
        for log in queued {
            XCTAssertEqual(log.events.withLock { $0.count }, 1, "a cancelled queued job reports exactly once")
        }
    }

    /// The stand-in model seen through `appendBatch`, recording each step's entries (token counts).
    final class StepLog: GenerationModel, @unchecked Sendable {
        let inner = CountingModel()
        let steps = Mutex<[[Int]]>([])
        var name: String { inner.name }
        var contextLength: Int { inner.contextLength }
        func makeSequence(capacity: Int) throws -> any TokenSequence { try inner.makeSequence(capacity: capacity) }
        func isEndOfGeneration(_ token: Int32) -> Bool { inner.isEndOfGeneration(token) }
        func makeTextStream() -> any TokenTextStream { inner.makeTextStream() }
        func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
            -> [UnsafeMutableBufferPointer<Float>] {
            steps.withLock { $0.append(entries.map(\.tokens.count)) }
            return try entries.map { try $0.sequence.append($0.tokens) }
        }
    }

    func testANewPromptAdvancesInSmallPiecesWhileOthersDecode() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 2
        limits.promptChunk = 16
        limits.promptChunkWhileDecoding = 4
        let scheduler = InferenceScheduler(limits: limits)
        let model = StepLog()
        let decoding = EventLog(), streaming = DispatchSemaphore(value: 0)
        let once = Mutex(false)
        // Token t predicts t + 1 and 15 ends: a prompt ending in 0 decodes 14 tokens.
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0], max: 14)) { event in
            // Hold the stream at its next step until the second request is queued, so they overlap.
            if case .text = event, once.withLock({ first in defer { first = true }; return !first }) {
                model.inner.close()
                streaming.signal()
            }
            decoding.handler(event)
        }
        XCTAssertEqual(streaming.wait(timeout: .now() + 10), .success)
        let late = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([Int32](repeating: 1, count: 12) + [0], max: 1),
                                 onEvent: late.handler)
        model.inner.open()
        late.wait()
        decoding.wait()
        let steps = model.steps.withLock { $0 }
        // The 13-token prompt went in pieces of at most 4 beside the decode row; alone, a step takes up to 16.
        let mixed = steps.filter { $0.count == 2 }
        XCTAssertFalse(mixed.isEmpty, "\(steps)")
        XCTAssertTrue(mixed.allSatisfy { $0.max()! <= 4 }, "\(steps)")
        XCTAssertEqual(mixed.reduce(0) { $0 + $1.max()! }, 13, "the whole prompt went in pieces beside the stream: \(steps)")
    }

    func testAShortPromptBehindALongOneIsNotKeptWaitingForIt() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 2
        limits.promptChunk = 8
        let scheduler = InferenceScheduler(limits: limits)
        let model = CountingModel()
        let order = Mutex<[String]>([])
        let long = EventLog(), short = EventLog()
        model.close()  // both are admitted before the first step runs
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy((0 ..< 48).map { Int32($0 % 12) }, max: 1)) { event in
            if case .text = event { order.withLock { $0.append("long") } }
            long.handler(event)
        }
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([1, 2], max: 1)) { event in
            if case .text = event { order.withLock { $0.append("short") } }
            short.handler(event)
        }
        model.open()
        long.wait(); short.wait()
        // The long prompt takes 6 steps of 8 tokens; the short one reads its 2 tokens in the first or second.
        XCTAssertEqual(order.withLock { $0 }, ["short", "long"])
    }

    func testAnUnrelatedRequestDoesNotTakeOverAnIdleConversationWhileThereIsRoom() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 2
        let scheduler = InferenceScheduler(limits: limits)
        let model = CountingModel()
        let conversation = (0 ..< 30).map { Int32($0 % 12) }
        func run(_ prompt: [Int32], max: Int) throws -> EventLog {
            let log = EventLog()
            _ = try scheduler.submit(model: model, request: GenerationRequest.greedy(prompt, max: max), onEvent: log.handler)
            log.wait()
            return log
        }
        _ = try run(conversation, max: 2)
        _ = try run([13, 14], max: 1)  // shares nothing: a second sequence, not the conversation's cache
        XCTAssertEqual(model.state.withLock { $0.sequences }, 2)
        let next = try run(conversation + [3, 4], max: 1)
        XCTAssertEqual(next.summary?.cachedPromptTokens, 30, "the conversation's cache was still there")
    }

    func testSharedPromptPrefixIsNotEvaluatedAgain() throws {
        let scheduler = InferenceScheduler()
        let model = CountingModel()
        let first = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([5, 6, 7, 8], max: 2), onEvent: first.handler)
        first.wait()
        let before = model.state.withLock { $0.evaluated }
        let second = EventLog()
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([5, 6, 7, 8, 9, 10], max: 1), onEvent: second.handler)
        second.wait()
        // The first request cached its prompt and its first generated token (9); only 10 is new.
        XCTAssertEqual(second.summary?.cachedPromptTokens, 5)
        XCTAssertEqual(model.state.withLock { $0.evaluated } - before, 1, "only the new prompt token is evaluated")
        XCTAssertEqual(second.text, "t11 ")
        XCTAssertEqual(model.state.withLock { $0.sequences }, 1)
    }

    func testConcurrentGenerationsAdvanceTogether() throws {
        let scheduler = InferenceScheduler()
        let model = CountingModel()
        let order = Mutex<[Int]>([])
        let a = EventLog(), b = EventLog()
        model.close()
        for (index, log) in [a, b].enumerated() {
            let handler = log.handler
            _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0], max: 6), onEvent: { event in
                if case .text = event { order.withLock { $0.append(index) } }
                handler(event)
            })
        }
        model.open()
        a.wait(); b.wait()
        let seen = order.withLock { $0 }
        XCTAssertEqual(seen.count, 12)
        // Every step carries both: a token of each per step, the second joining in the first step or (if it was
        // submitted while the first step was already running) in the next one.
        let together = Array([[Int]](repeating: [0, 1], count: 6).joined())
        let joinedLate = [0] + Array([[Int]](repeating: [0, 1], count: 5).joined()) + [1]
        XCTAssertTrue(seen == together || seen == joinedLate, "both streams advance in every step: \(seen)")
    }

    func testShutdownFailsQueuedAndRunningGenerations() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 1
        let scheduler = InferenceScheduler(limits: limits)
        // The running generation never ends by itself (token 15 is barred and the context is long), so however
        // slowly this thread reaches shutdown(), the generation is still running then.
        let model = CountingModel(contextLength: 1 << 22)
        let running = EventLog(), queued = EventLog()
        var p = SamplingParameters()
        p.temperature = 0
        p.logitBias = [15: -1000]
        _ = try scheduler.submit(model: model, request: GenerationRequest(promptTokens: [0], maxTokens: 1 << 21, sampling: p),
                                 onEvent: running.handler)
        _ = try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: queued.handler)
        scheduler.shutdown()
        running.wait(); queued.wait()
        XCTAssertEqual(running.failure, .shuttingDown)
        XCTAssertEqual(queued.failure, .shuttingDown)
        XCTAssertThrowsError(try scheduler.submit(model: model, request: GenerationRequest.greedy([0]), onEvent: { _ in }))
    }
}
