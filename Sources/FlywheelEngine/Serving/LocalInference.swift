import FlywheelKernels

/// Local inference as one service: the compute pool, the models loaded onto it and the scheduler
/// that runs their generations. What a server or a command needs to serve GGUF models, without
/// wiring kernels, pools, templates and the scheduler itself.
///
/// Create it once at start-up (loading maps every file, so a bad one fails there with a message
/// naming it); call `shutdown` when done. All members may be used from any thread. Generation
/// events arrive on the scheduler's thread (see `InferenceScheduler.submit`).
public final class LocalInference: Sendable {
    /// The loaded models, in the order of the specs.
    public let models: [LocalModel]
    /// The scheduler's limits (slots, queue, prompt chunk), as clamped by the scheduler.
    public var limits: InferenceScheduler.Limits { scheduler.limits }
    /// Threads the matrix work of each step is spread over.
    public var threadCount: Int { pool.threadCount }
    /// The kernel implementation chosen for this CPU ("avx2", "portable" ...), for start-up logs.
    public var kernels: String { Kernels.activePath.description }

    private let byName: [String: LocalModel]
    private let pool: ComputePool
    private let scheduler: InferenceScheduler

    /// Loads `specs` in order onto a pool of `threads` threads (nil: the CPUs this process may use)
    /// and starts the scheduler with `limits`. Throws the first model that cannot be loaded (after
    /// releasing the pool), or `duplicateModelName` when two specs share a name.
    public init(models specs: [LocalModelSpec], threads: Int? = nil,
                limits: InferenceScheduler.Limits = InferenceScheduler.Limits()) throws(LocalModelError) {
        var seen = Set<String>()
        for spec in specs where !seen.insert(spec.name).inserted { throw .duplicateModelName(spec.name) }
        let pool = threads.map { ComputePool(threadCount: $0) } ?? ComputePool()
        var models: [LocalModel] = []
        do {
            for spec in specs {
                models.append(try LocalModel(name: spec.name, path: spec.path, contextLength: spec.contextLength,
                                             chatTemplate: spec.chatTemplate, pool: pool))
            }
        } catch {
            pool.shutdown()
            throw error
        }
        self.models = models
        self.byName = Dictionary(uniqueKeysWithValues: models.map { ($0.name, $0) })
        self.pool = pool
        self.scheduler = InferenceScheduler(limits: limits)
    }

    /// The loaded model requests call `name`, if any.
    public func model(named name: String) -> LocalModel? { byName[name] }

    /// Queues a generation on `model` (one of `models`). `onEvent` is called on the scheduler
    /// thread, in order, and must not block. Throws `emptyPrompt`, `contextLengthExceeded`,
    /// `queueFull` or `shuttingDown` without queueing anything.
    public func submit(model: any GenerationModel, request: GenerationRequest,
                       onEvent: @escaping @Sendable (GenerationEvent) -> Void) throws(GenerationError) -> GenerationHandle {
        try scheduler.submit(model: model, request: request, onEvent: onEvent)
    }

    /// A snapshot for metrics: generations running and waiting, tokens evaluated and generated so far.
    public var counts: (active: Int, queued: Int, promptTokens: Int, generatedTokens: Int) { scheduler.counts }

    /// Fails everything queued or running with `shuttingDown`, joins the scheduler thread, then the
    /// pool's workers (in that order: the pool must not stop under a running step). Idempotent.
    public func shutdown() {
        scheduler.shutdown()
        pool.shutdown()
    }

    deinit { shutdown() }
}
