import Foundation
import Synchronization

/// Runs local generations on one dedicated thread, with continuous batching.
///
/// Up to `slots` generations are active at once. Each step evaluates, in one batched pass per model
/// (`GenerationModel.appendBatch`), the next token of every generation that is decoding plus up to
/// `promptChunk` prompt tokens of those still reading their prompts (a different one first each step), then
/// samples a token
/// for each one that has logits. So eight streams cost about one forward pass per token, not eight; new
/// requests join between steps, and a long prompt never freezes the streams: it advances a chunk per step
/// beside them. Further requests wait in FIFO order up to `maxQueued`; beyond that `submit` throws
/// `queueFull` at once, so callers can answer 503 instead of hanging.
///
/// The matrix work inside each step is spread over the model's compute pool by the model itself;
/// only this thread ever calls into models, so the pool has exactly one caller.
///
/// Prompt prefixes are reused: finished sequences keep their KV cache, and a new generation takes the
/// idle sequence sharing the longest prefix with its prompt (the previous turns of a chat); when a running
/// generation holds a longer shared prefix (a common system prompt), its keys and values are copied
/// instead of evaluated again.
public final class InferenceScheduler: Sendable {
    public struct Limits: Sendable {
        /// Generations evaluated concurrently (each holds a KV cache).
        public var slots: Int = 2
        /// Generations waiting for a slot before new ones are refused.
        public var maxQueued: Int = 32
        /// Prompt tokens evaluated per step when no generation is decoding.
        public var promptChunk: Int = 128
        /// Prompt tokens per step while generations are decoding (at most `promptChunk`): a step that carries
        /// prompt tokens is slower for every stream, so new prompts advance in smaller pieces beside them.
        public var promptChunkWhileDecoding: Int = 32
        /// Bytes of KV cache all sequences together may hold (running and idle ones), or nil for no limit. A
        /// generation reserves its prompt plus `maxTokens` (or the whole context) when it starts, so it never runs
        /// out mid-way; one that does not fit waits for running ones to end, and one larger than the whole
        /// budget is refused at `submit` (`cacheBudgetExceeded`). Without a budget caches still grow only as
        /// sequences do.
        public var cacheBudgetBytes: Int?
        public init() {}
    }

    public let limits: Limits

    private final class Job: @unchecked Sendable {
        // Owned by the scheduler thread once dequeued; `handle` and `onEvent` are thread-safe.
        let model: any GenerationModel
        let request: GenerationRequest
        let handle: GenerationHandle
        let onEvent: @Sendable (GenerationEvent) -> Void
        let submittedAt: UInt64
        /// Tokens the generation may hold (prompt plus its limit, at most the context) and their cache bytes.
        let needTokens: Int
        let needBytes: Int
        /// Cache bytes charged to this job while it runs (its sequence's allocation).
        var chargedBytes = 0
        /// What the budget counts for this job: its allocation, or its need until it has one (or if that is more).
        var budgetBytes: Int { max(chargedBytes, needBytes) }
        var sequence: (any TokenSequence)?
        var sampler: Sampler
        var textStream: (any TokenTextStream)?
        var matcher: StopSequenceMatcher
        var promptDone = 0
        var cachedPrompt = 0
        var generated = 0
        /// The sampled token to evaluate next (decoding), nil while the prompt is being read.
        var pending: Int32?
        /// The tokens this step evaluates for the job.
        var stepTokens: ArraySlice<Int32> = []
        var startedAt: UInt64 = 0
        var promptFinishedAt: UInt64 = 0
        var firstTokenAt: UInt64 = 0
        var lastTokenAt: UInt64 = 0
        var tokenGaps: [Float] = []

        init(model: any GenerationModel, request: GenerationRequest, handle: GenerationHandle,
             onEvent: @escaping @Sendable (GenerationEvent) -> Void) {
            self.model = model
            self.request = request
            self.handle = handle
            self.onEvent = onEvent
            self.submittedAt = Self.now()
            // Both terms capped at the context first: a max_tokens near Int.max must not overflow the sum.
            let context = model.contextLength
            self.needTokens = min(context, min(request.promptTokens.count, context) + min(request.maxTokens ?? context, context))
            // The cache holds whole blocks of positions.
            self.needBytes = KVCache.wholeBlocks(needTokens) * model.cacheBytesPerToken
            self.sampler = Sampler(parameters: request.sampling)
            self.matcher = StopSequenceMatcher(stops: request.stop)
        }

        static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
    }

    private struct Shared {
        var waiting: [Job] = []
        /// Work queued with `perform`, run on the scheduler thread before the next step.
        var tasks: [@Sendable (Result<Void, GenerationError>) -> Void] = []
        /// Jobs holding a slot (set by the scheduler thread), so submitters can count free slots.
        var activeCount = 0
        var stopping = false
    }
    /// Queue state shared with submitting threads; the condition wakes the scheduler thread.
    private let shared = Mutex(Shared())
    private let wakeup = NSCondition()
    private let exited = DispatchSemaphore(value: 0)

    /// Idle sequences kept for prefix reuse, by model identity. Scheduler thread only.
    private final class Idle: @unchecked Sendable {
        // Only touched by the scheduler thread. The model itself, not its address: a model freed after a reload
        // must not hand its caches to a model that a later load puts at the same address.
        var sequences: [(model: any GenerationModel, sequence: any TokenSequence)] = []
        /// The models served now, once a reload has said so: a finished generation of any other model does not keep
        /// its cache (nor, through it, the model).
        var served: [any GenerationModel]?
        /// Which prompt-reading generation gets the first claim on the next step's prompt budget.
        var promptTurn = 0
        /// Sequences held by running jobs; with the idle ones, never more than `slots` exist.
        var inUse = 0
        /// KV cache bytes the idle sequences hold.
        var heldBytes: Int { sequences.reduce(0) { $0 + $1.sequence.reservedBytes } }
    }
    private let idle = Idle()

    public init(limits: Limits = Limits()) {
        var limits = limits
        limits.slots = max(1, limits.slots)
        limits.maxQueued = max(0, limits.maxQueued)
        limits.promptChunk = max(1, limits.promptChunk)
        limits.promptChunkWhileDecoding = min(max(1, limits.promptChunkWhileDecoding), limits.promptChunk)
        self.limits = limits
        let t = Thread { [self] in self.runLoop() }
        t.name = "flywheel-inference"
        t.stackSize = 8 << 20
        t.start()
    }

    /// Queues a generation. `onEvent` is called on the scheduler thread, in order; it must not block.
    /// (The one exception: a job cancelled while still queued is failed on the cancelling thread.)
    /// Throws `emptyPrompt`, `contextLengthExceeded`, `queueFull` or `shuttingDown` without queueing anything.
    public func submit(model: any GenerationModel, request: GenerationRequest,
                       onEvent: @escaping @Sendable (GenerationEvent) -> Void) throws(GenerationError) -> GenerationHandle {
        let capacity = model.contextLength
        if request.promptTokens.isEmpty { throw .emptyPrompt }
        if request.promptTokens.count >= capacity {
            throw .contextLengthExceeded(promptTokens: request.promptTokens.count, contextLength: capacity)
        }
        var request = request
        let perToken = model.cacheBytesPerToken
        if let budget = limits.cacheBudgetBytes, request.maxTokensFitsBudget, perToken > 0 {
            // A default max_tokens shrinks to what the budget holds beside the prompt (at least one token).
            let fits = budget / perToken / KVCache.blockLength * KVCache.blockLength - request.promptTokens.count
            if fits >= 1, fits < request.maxTokens ?? Int.max { request.maxTokens = fits }
        }
        let handle = GenerationHandle { [weak self] handle in self?.withdraw(handle) }
        let job = Job(model: model, request: request, handle: handle, onEvent: onEvent)
        if let budget = limits.cacheBudgetBytes, job.needBytes > budget {
            throw .cacheBudgetExceeded(tokens: job.needTokens, neededBytes: job.needBytes, budgetBytes: budget)
        }
        let refusal: GenerationError? = shared.withLock { s in
            if s.stopping { return .shuttingDown }
            // Running plus waiting jobs may not exceed the slots plus the queue.
            if s.activeCount + s.waiting.count >= limits.maxQueued + limits.slots { return .queueFull(limit: limits.maxQueued) }
            s.waiting.append(job)
            return nil
        }
        if let refusal { throw refusal }
        wakeup.lock(); wakeup.signal(); wakeup.unlock()
        return handle
    }

    /// Runs `task` on the scheduler thread between two steps, with `.success` (the only thread that may use the
    /// models' compute pool, e.g. for embeddings), or with `.failure(.shuttingDown)` if the scheduler stops first.
    /// Tasks run in the order queued, before the next generation step; each should be short (one input), so
    /// streams keep flowing. Throws `queueFull` when `maxQueued` tasks are waiting, `shuttingDown` after `shutdown`.
    public func perform(_ task: @escaping @Sendable (Result<Void, GenerationError>) -> Void) throws(GenerationError) {
        let refusal: GenerationError? = shared.withLock { s in
            if s.stopping { return .shuttingDown }
            if s.tasks.count >= max(1, limits.maxQueued) { return .queueFull(limit: limits.maxQueued) }
            s.tasks.append(task)
            return nil
        }
        if let refusal { throw refusal }
        wakeup.lock(); wakeup.signal(); wakeup.unlock()
    }

    /// Removes a cancelled job that is still waiting and reports it, on the cancelling thread. Whoever
    /// takes a job out of `waiting` under the lock (this, admission or shutdown) is the one that ends it,
    /// so it ends exactly once; a job already admitted is ended by the scheduler thread instead.
    private func withdraw(_ handle: GenerationHandle) {
        let job = shared.withLock { s -> Job? in
            guard let i = s.waiting.firstIndex(where: { $0.handle === handle }) else { return nil }
            return s.waiting.remove(at: i)
        }
        job?.onEvent(.failed(.cancelled))
    }

    /// A snapshot for metrics: generations running and waiting, tokens evaluated and generated so far.
    public var counts: (active: Int, queued: Int, promptTokens: Int, generatedTokens: Int) {
        let (active, queued) = shared.withLock { ($0.activeCount, $0.waiting.count) }
        return (active, queued, promptTokensTotal.load(ordering: .relaxed), generatedTokensTotal.load(ordering: .relaxed))
    }
    private let promptTokensTotal = Atomic<Int>(0)
    private let generatedTokensTotal = Atomic<Int>(0)

    /// A snapshot for metrics: batched steps run, token rows evaluated in them (rows / steps is the mean batch),
    /// and the KV cache bytes all sequences (running and idle) hold after the latest step.
    public var batching: (steps: Int, rows: Int, cacheBytes: Int) {
        (stepsTotal.load(ordering: .relaxed), stepRowsTotal.load(ordering: .relaxed), cacheBytesHeld.load(ordering: .relaxed))
    }
    private let stepsTotal = Atomic<Int>(0)
    private let stepRowsTotal = Atomic<Int>(0)
    private let cacheBytesHeld = Atomic<Int>(0)

    /// Fails everything queued or running with `shuttingDown` and joins the thread.
    public func shutdown() {
        let first = shared.withLock { s -> Bool in
            defer { s.stopping = true }
            return !s.stopping
        }
        guard first else { return }
        wakeup.lock(); wakeup.signal(); wakeup.unlock()
        exited.wait()
    }

    deinit { shutdown() }

    // MARK: scheduler thread

    private func runLoop() {
        var active: [Job] = []
        while true {
            // Admit waiting jobs into free slots; sleep when there is nothing to do.
            var stopping = false
            var tasks: [@Sendable (Result<Void, GenerationError>) -> Void] = []
            wakeup.lock()
            while true {
                let charged = active.reduce(0) { $0 + $1.budgetBytes }
                let (admitted, stop) = shared.withLock { s -> ([Job], Bool) in
                    // FIFO while slots are free and the cache budget holds the next one's need.
                    var n = 0
                    var committed = charged
                    while n < s.waiting.count, active.count + n < limits.slots {
                        let need = s.waiting[n].needBytes
                        if let budget = limits.cacheBudgetBytes, committed + need > budget { break }
                        committed += need
                        n += 1
                    }
                    let taken = Array(s.waiting.prefix(n))
                    s.waiting.removeFirst(n)
                    s.activeCount = active.count + n
                    tasks = s.tasks
                    s.tasks = []
                    return (taken, s.stopping)
                }
                active.append(contentsOf: admitted)
                stopping = stop
                if stopping || !active.isEmpty || !tasks.isEmpty { break }
                wakeup.wait()
            }
            wakeup.unlock()

            if stopping {
                let queued = shared.withLock { s -> [Job] in defer { s.waiting = [] }; return s.waiting }
                for job in active + queued { finishFailed(job, .shuttingDown) }
                let late = shared.withLock { s in defer { s.tasks = [] }; return s.tasks }
                for task in tasks + late { task(.failure(.shuttingDown)) }
                exited.signal()
                return
            }
            for task in tasks { task(.success(())) }
            if active.isEmpty { continue }
            runStep(&active)
            shared.withLock { $0.activeCount = active.count }
        }
    }

    /// One step: drops cancelled jobs, gives new ones a sequence, evaluates every job's next tokens in one
    /// batched pass per model, and samples for each job that now has logits. Removes the jobs that ended.
    private func runStep(_ active: inout [Job]) {
        var ended = Set<ObjectIdentifier>()
        var work: [Job] = []
        var reading: [Job] = []
        for job in active {
            if job.handle.isCancelled {
                finishFailed(job, .cancelled)
                ended.insert(ObjectIdentifier(job))
                continue
            }
            if job.sequence == nil {
                do {
                    try begin(job, running: active)
                } catch {
                    finishFailed(job, .evaluationFailed("\(error)"))
                    ended.insert(ObjectIdentifier(job))
                    continue
                }
            }
            if let token = job.pending {
                job.stepTokens = [token]
                work.append(job)
                continue
            }
            if job.promptDone < job.request.promptTokens.count { reading.append(job) }
        }
        // The prompt budget goes to the generations reading their prompts, a different one first each step, so a
        // short prompt behind a long one gets its first token after a step or two, not after the whole long prompt.
        var promptBudget = work.isEmpty ? limits.promptChunk : limits.promptChunkWhileDecoding
        if !reading.isEmpty {
            let first = idle.promptTurn % reading.count
            idle.promptTurn &+= 1
            for k in 0 ..< reading.count where promptBudget > 0 {
                let job = reading[(first + k) % reading.count]
                let prompt = job.request.promptTokens
                let end = min(prompt.count, job.promptDone + promptBudget)
                job.stepTokens = prompt[job.promptDone ..< end]
                promptBudget -= end - job.promptDone
                work.append(job)
            }
        }
        // One pass per model, in the order the jobs came.
        var rows = 0
        var models: [ObjectIdentifier] = []
        var groups: [ObjectIdentifier: [Job]] = [:]
        for job in work {
            let key = ObjectIdentifier(job.model)
            if groups[key] == nil { models.append(key) }
            groups[key, default: []].append(job)
        }
        for key in models {
            let group = groups[key]!
            let logits: [UnsafeMutableBufferPointer<Float>]
            do {
                logits = try group[0].model.appendBatch(group.map { ($0.sequence!, $0.stepTokens) })
            } catch {
                for job in group {
                    finishFailed(job, .evaluationFailed("\(error)"))
                    ended.insert(ObjectIdentifier(job))
                }
                continue
            }
            for (job, logits) in zip(group, logits) {
                let count = job.stepTokens.count
                rows += count
                job.stepTokens = []
                if job.pending != nil {
                    job.pending = nil
                } else {
                    promptTokensTotal.add(count, ordering: .relaxed)
                    job.promptDone += count
                    guard job.promptDone == job.request.promptTokens.count else { continue }
                    job.promptFinishedAt = Job.now()
                }
                if sampleNext(job, logits: logits) { ended.insert(ObjectIdentifier(job)) }
            }
        }
        if !ended.isEmpty { active.removeAll { ended.contains(ObjectIdentifier($0)) } }
        if rows > 0 {
            stepsTotal.add(1, ordering: .relaxed)
            stepRowsTotal.add(rows, ordering: .relaxed)
        }
        let held = active.reduce(0) { $0 + ($1.sequence?.reservedBytes ?? 0) } + idle.heldBytes
        cacheBytesHeld.store(held, ordering: .relaxed)
    }

    /// Gives `job` a sequence: the idle one sharing the longest prompt prefix, or a fresh one; then, if a
    /// running generation of the same model has evaluated a longer shared prefix, copies that prefix over.
    private func begin(_ job: Job, running: [Job]) throws {
        job.startedAt = Job.now()
        let prompt = job.request.promptTokens
        var bestIndex: Int?
        var bestShared = -1
        for (i, entry) in idle.sequences.enumerated() where entry.model === job.model {
            let n = Self.sharedPrefix(entry.sequence.tokens, prompt)
            if n > bestShared { bestShared = n; bestIndex = i }
        }
        // While there is room for another sequence, an idle cache that shares little of what it holds (a BOS token
        // of a long system prompt) stays for the conversation it holds, and this job starts a fresh one.
        if let i = bestIndex, bestShared < Self.worthReusing, 2 * bestShared < idle.sequences[i].sequence.tokens.count,
           idle.sequences.count + idle.inUse < limits.slots {
            bestIndex = nil
        }
        // What the other running generations hold or may grow to.
        let othersCharged = running.reduce(0) { $1 === job ? $0 : $0 + $1.budgetBytes }
        if let i = bestIndex, let budget = limits.cacheBudgetBytes,
           othersCharged + max(job.needBytes, idle.sequences[i].sequence.reservedBytes) > budget {
            // Reusing it would hold more than the budget allows: free it and start small.
            idle.sequences.remove(at: i)
            bestIndex = nil
        }
        let sequence: any TokenSequence
        if let i = bestIndex {
            sequence = idle.sequences.remove(at: i).sequence
        } else {
            // Free the least recently used idle cache first, so memory stays at `slots` sequences.
            while !idle.sequences.isEmpty, idle.sequences.count + idle.inUse >= limits.slots {
                idle.sequences.removeFirst()
            }
            sequence = try job.model.makeSequence(capacity: job.model.contextLength)
            bestShared = 0
        }
        // Keep at least one prompt token to evaluate: its logits pick the first new token.
        var keep = min(max(0, bestShared), prompt.count - 1)
        sequence.truncate(to: keep)
        var donor: (sequence: any TokenSequence, shared: Int)?
        for other in running where other !== job && other.model === job.model {
            guard let candidate = other.sequence else { continue }
            let n = min(Self.sharedPrefix(candidate.tokens, prompt), prompt.count - 1)
            if n > keep, n > (donor?.shared ?? 0) { donor = (candidate, n) }
        }
        if let donor, sequence.adoptPrefix(of: donor.sequence, count: donor.shared) { keep = donor.shared }
        sequence.reserve(job.needTokens)
        job.chargedBytes = sequence.reservedBytes
        // Idle caches go, least recently used first, while everything held passes the budget.
        if let budget = limits.cacheBudgetBytes {
            var held = othersCharged + job.budgetBytes + idle.heldBytes
            while held > budget, !idle.sequences.isEmpty {
                held -= idle.sequences.removeFirst().sequence.reservedBytes
            }
        }
        job.cachedPrompt = keep
        job.sequence = sequence
        idle.inUse += 1
        job.promptDone = keep
        job.textStream = job.model.makeTextStream()
        job.sampler.observe(prompt)
    }

    /// Shared prompt tokens that make an idle cache worth taking over when a fresh sequence could be made instead
    /// (so does sharing at least half of what it holds).
    static let worthReusing = 16

    /// Frees the idle caches of models other than `models` (a reload replaced or removed them), and keeps none of
    /// theirs when their running generations end, so a replaced model's weights are not kept alive by caches
    /// nobody can use. Runs on the scheduler thread between steps.
    public func dropIdleSequences(keeping models: [any GenerationModel]) {
        let task: @Sendable (Result<Void, GenerationError>) -> Void = { [weak self] result in
            guard let self, case .success = result else { return }
            self.idle.served = models
            self.idle.sequences.removeAll { entry in !models.contains { $0 === entry.model } }
        }
        shared.withLock { s in if !s.stopping { s.tasks.append(task) } }
        wakeup.lock(); wakeup.signal(); wakeup.unlock()
    }

    /// How many leading tokens `a` and `b` share.
    private static func sharedPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
        var n = 0
        let limit = min(a.count, b.count)
        while n < limit, a[n] == b[n] { n += 1 }
        return n
    }

    /// Samples the job's next token from `logits` and reports it; returns true when the job is over, else
    /// leaves the token pending for the next step.
    private func sampleNext(_ job: Job, logits: UnsafeMutableBufferPointer<Float>) -> Bool {
        guard let sequence = job.sequence else { return true }
        let token = job.sampler.sample(logits)
        let now = Job.now()
        if job.generated == 0 {
            job.firstTokenAt = now
        } else {
            job.tokenGaps.append(Float(Double(now &- job.lastTokenAt) / 1e6))
        }
        job.lastTokenAt = now
        if job.model.isEndOfGeneration(token) {
            flushText(job)
            finish(job, reason: .stop)
            return true
        }
        job.generated += 1
        job.handle.countGeneratedToken()
        generatedTokensTotal.add(1, ordering: .relaxed)
        job.sampler.observe(token)
        let piece = job.textStream?.append(token) ?? ""
        if !piece.isEmpty {
            let (out, stopped) = job.matcher.append(piece)
            if !out.isEmpty { job.onEvent(.text(out)) }
            if stopped {
                finish(job, reason: .stop)
                return true
            }
        }
        if let max = job.request.maxTokens, job.generated >= max {
            flushText(job)
            finish(job, reason: .length)
            return true
        }
        // Prompt plus completion never exceed the context: this token was the last that fits.
        if sequence.tokens.count + 1 >= sequence.capacity {
            flushText(job)
            finish(job, reason: .length)
            return true
        }
        job.pending = token
        return false
    }

    /// Sends text held back by the decoder or the stop matcher at the end of a generation.
    private func flushText(_ job: Job) {
        let (out, stopped) = job.matcher.append(job.textStream?.finish() ?? "")
        let tail = stopped ? out : out + job.matcher.finish()
        if !tail.isEmpty { job.onEvent(.text(tail)) }
    }

    private func finish(_ job: Job, reason: FinishReason) {
        let end = Job.now()
        let summary = GenerationSummary(
            finishReason: reason, promptTokens: job.request.promptTokens.count, cachedPromptTokens: job.cachedPrompt,
            completionTokens: job.generated,
            queueSeconds: Double(job.startedAt &- job.submittedAt) / 1e9,
            promptSeconds: Double(job.promptFinishedAt &- job.startedAt) / 1e9,
            decodeSeconds: job.firstTokenAt == 0 ? 0 : Double(end &- job.firstTokenAt) / 1e9,
            seed: job.sampler.seed, tokenGapsMilliseconds: job.tokenGaps)
        release(job)
        job.onEvent(.finished(summary))
    }

    private func finishFailed(_ job: Job, _ error: GenerationError) {
        release(job)
        job.onEvent(.failed(error))
    }

    /// Returns the job's sequence to the idle pool (bounded by the slot count).
    private func release(_ job: Job) {
        guard let sequence = job.sequence else { return }
        job.sequence = nil
        job.pending = nil
        idle.inUse -= 1
        if let served = idle.served, !served.contains(where: { $0 === job.model }) { return }
        idle.sequences.append((job.model, sequence))
        if idle.sequences.count > limits.slots { idle.sequences.removeFirst() }
    }
}
