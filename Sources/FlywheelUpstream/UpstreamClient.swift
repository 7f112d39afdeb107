/// Sends requests to OpenAI-compatible upstreams through one libcurl multi handle driven by one dedicated thread.
/// All methods may be called from any thread, including from inside a handler callback.
public final class UpstreamClient: Sendable {
    private let engine: CurlEngine

    /// Any thread. Runs curl_global_init (once per process), creates the multi handle and starts its thread.
    public init(configuration: UpstreamClientConfiguration = .init()) throws {
        engine = try CurlEngine(configuration: configuration)
        try engine.launch()
    }

    /// Any thread. Driver mode (curl_multi_socket_action): no curl thread; the client runs on `driver`'s loop.
    ///
    /// - `start`, `UpstreamTransfer.cancel` and `shutdown` called on the driver thread act directly (the easy
    ///   handle is added and curl kicked before `start` returns, unless called from inside a handler callback, in
    ///   which case it happens as soon as that callback's engine operation ends); from other threads they hop to
    ///   the driver with `execute`. Handler callbacks always come on the driver thread.
    /// - `shutdown()` from another thread hops to the driver, completes every transfer with `.shutdown`, releases
    ///   the sockets and timers it registered with the driver, cleans up curl, and blocks until that is done.
    ///   Call it while the driver's loop still runs (e.g. before stopping the HTTP server); if the loop is
    ///   already gone for good (the driver dropped the task), the same cleanup runs on the calling thread
    ///   without touching the driver. From the driver thread it closes at once (inside a handler: as soon as
    ///   that callback returns into the engine) and does not block.
    /// - A client that was shut down completes new `start`s at once with `.shutdown` on the calling thread.
    public convenience init(configuration: UpstreamClientConfiguration = .init(), driver: any UpstreamEventDriver) throws {
        self.init(engine: try CurlEngine(configuration: configuration, driver: driver))
    }

    private init(engine: CurlEngine) {
        self.engine = engine
    }

    deinit { engine.shutdown() }

    /// Any thread. Queues the request for the curl thread and returns at once; the handler's calls then come on
    /// the curl thread. On a client that was shut down, the handler gets `.shutdown` on the calling thread instead.
    @discardableResult
    public func start(_ request: UpstreamRequest, handler: any UpstreamResponseHandler) -> UpstreamTransfer {
        let job = TransferJob(request: request, handler: handler, engine: engine)
        engine.start(job)
        return UpstreamTransfer(job: job)
    }

    /// Transfers started and not yet completed. Any thread.
    public var activeTransfers: Int { engine.activeCount.load(ordering: .relaxed) }

    /// Cancels what is left (handlers get .shutdown) and joins the thread. Idempotent. Any thread; from inside a
    /// handler it cannot join its own thread, so it only requests the stop.
    public func shutdown() { engine.shutdown() }
}
