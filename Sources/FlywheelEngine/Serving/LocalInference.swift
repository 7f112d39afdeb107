import FlywheelKernels
import Synchronization

/// Local inference as one service: the compute pool, the models loaded onto it and the scheduler
/// that runs their generations. What a server or a command needs to serve GGUF models, without
/// wiring kernels, pools, templates and the scheduler itself.
///
/// Create it once at start-up (loading maps every file, so a bad one fails there with a message
/// naming it); call `shutdown` when done. All members may be used from any thread. Generation
/// events arrive on the scheduler's thread (see `InferenceScheduler.submit`).
public final class LocalInference: Sendable {
    /// The models served now, in the order of the specs (a snapshot: `reload` may change it).
    public var models: [LocalModel] { served.withLock { $0.map(\.model) } }
    /// The scheduler's limits (slots, queue, prompt chunk), as clamped by the scheduler.
    public var limits: InferenceScheduler.Limits { scheduler.limits }
    /// Threads the matrix work of each step is spread over.
    public var threadCount: Int { pool.threadCount }
    /// The kernel implementation chosen for this CPU ("avx2", "portable" ...) and, where the kernels read them
    /// so, that weight rows are interleaved in groups of 4 at load, for start-up logs.
    public var kernels: String {
        Kernels.activePath.description + (Q8Matrix.preferredLayout == .rowGroups ? " (weight rows in groups of 4)" : "")
    }

    /// The served models with the specs they were loaded from (so a reload can tell what changed).
    private let served: Mutex<[(spec: LocalModelSpec, model: LocalModel)]>
    /// One reload at a time: loading maps files and may take a while.
    private let reloading = Mutex<Void>(())
    private let pool: ComputePool
    private let scheduler: InferenceScheduler

    /// Loads `specs` in order onto a pool of `threads` threads (nil: the CPUs this process may use)
    /// and starts the scheduler with `limits`. Throws the first model that cannot be loaded (after
    /// releasing the pool), or `duplicateModelName` when two specs share a name.
    public init(models specs: [LocalModelSpec], threads: Int? = nil,
                limits: InferenceScheduler.Limits = InferenceScheduler.Limits()) throws(LocalModelError) {
        try Self.checkNames(specs)
        let pool = threads.map { ComputePool(threadCount: $0) } ?? ComputePool()
        var models: [(spec: LocalModelSpec, model: LocalModel)] = []
        do {
            for spec in specs { models.append((spec, try Self.load(spec, pool: pool))) }
        } catch {
            pool.shutdown()
            throw error
        }
        self.served = Mutex(models)
        self.pool = pool
        self.scheduler = InferenceScheduler(limits: limits)
    }

    private static func checkNames(_ specs: [LocalModelSpec]) throws(LocalModelError) {
        var seen = Set<String>()
        for spec in specs where !seen.insert(spec.name).inserted { throw .duplicateModelName(spec.name) }
    }

    /// The loaded model requests call `name`, if any.
    public func model(named name: String) -> LocalModel? { served.withLock { $0.first { $0.model.name == name }?.model } }

    private static func load(_ spec: LocalModelSpec, pool: ComputePool) throws(LocalModelError) -> LocalModel {
        try LocalModel(name: spec.name, path: spec.path, contextLength: spec.contextLength, chatTemplate: spec.chatTemplate, pool: pool)
    }

    /// What a reload did.
    public struct Reload: Sendable {
        public var added: [String] = []
        public var replaced: [String] = []
        public var removed: [String] = []
        public var unchanged: [String] = []
    }

    /// Serves exactly `specs` from now on: loads what is new or changed (on the calling thread, while the old
    /// models keep serving), then swaps the list in one step. Generations already running finish on the model
    /// they started on. If any model fails to load, nothing changes and the error names it.
    public func reload(_ specs: [LocalModelSpec]) throws(LocalModelError) -> Reload {
        try Self.checkNames(specs)
        return try reloading.withLock { _ throws(LocalModelError) -> Reload in
            let current = served.withLock { $0 }
            var next: [(spec: LocalModelSpec, model: LocalModel)] = []
            var report = Reload()
            for spec in specs {
                if let old = current.first(where: { $0.spec.name == spec.name }) {
                    if old.spec == spec {
                        next.append(old)
                        report.unchanged.append(spec.name)
                        continue
                    }
                    next.append((spec, try Self.load(spec, pool: pool)))
                    report.replaced.append(spec.name)
                } else {
                    next.append((spec, try Self.load(spec, pool: pool)))
                    report.added.append(spec.name)
                }
            }
            let names = Set(specs.map(\.name))
            report.removed = current.map(\.spec.name).filter { !names.contains($0) }
            served.withLock { $0 = next }
            scheduler.dropIdleSequences(keeping: next.map(\.model))
            return report
        }
    }

    /// Queues a generation on `model` (one of `models`). `onEvent` is called on the scheduler
    /// thread, in order, and must not block. Throws `emptyPrompt`, `contextLengthExceeded`,
    /// `queueFull` or `shuttingDown` without queueing anything.
    public func submit(model: any GenerationModel, request: GenerationRequest,
                       onEvent: @escaping @Sendable (GenerationEvent) -> Void) throws(GenerationError) -> GenerationHandle {
        try scheduler.submit(model: model, request: request, onEvent: onEvent)
    }

    /// Runs `task` on the scheduler thread between generation steps (see `InferenceScheduler.perform`): the one
    /// thread allowed to evaluate models on the shared pool outside a generation.
    public func perform(_ task: @escaping @Sendable (Result<Void, GenerationError>) -> Void) throws(GenerationError) {
        try scheduler.perform(task)
    }

    /// A snapshot for metrics: generations running and waiting, tokens evaluated and generated so far.
    public var counts: (active: Int, queued: Int, promptTokens: Int, generatedTokens: Int) { scheduler.counts }

    /// A snapshot for metrics: batched steps, token rows in them, KV cache bytes held (see `InferenceScheduler.batching`).
    public var batching: (steps: Int, rows: Int, cacheBytes: Int) { scheduler.batching }

    /// Fails everything queued or running with `shuttingDown`, joins the scheduler thread, then the
    /// pool's workers (in that order: the pool must not stop under a running step). Idempotent.
    public func shutdown() {
        scheduler.shutdown()
        pool.shutdown()
    }

    deinit { shutdown() }
}
