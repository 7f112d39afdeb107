/// Sends requests to OpenAI-compatible upstreams through one libcurl multi handle driven by one dedicated thread.
/// All methods may be called from any thread, including from inside a handler callback.
public final class UpstreamClient: Sendable {
    private let engine: CurlEngine

    /// Any thread. Runs curl_global_init (once per process), creates the multi handle and starts its thread.
    public init(configuration: UpstreamClientConfiguration = .init()) throws {
        engine = try CurlEngine(configuration: configuration)
        try engine.launch()
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
