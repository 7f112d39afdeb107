/// Sends requests to OpenAI-compatible upstreams through one libcurl multi handle, driven in
/// `curl_multi_socket_action` mode on an event loop (`UpstreamEventDriver`), e.g. one of the HTTP server's loops,
/// so that a request is received, sent upstream and answered on one thread.
/// All methods may be called from any thread, including from inside a handler callback.
///
/// - `start`, `UpstreamTransfer.cancel` and `shutdown` called on the driver's loop thread act directly (the easy
///   handle is added and curl kicked before `start` returns, unless called from inside a handler callback, in
///   which case it happens as soon as that callback returns into the client); from other threads they hop to
///   the loop with `execute`. Handler callbacks always come on the driver's loop thread.
/// - `shutdown()` from another thread hops to the loop, completes every transfer with `.shutdown`, releases
///   the sockets and timers it registered with the driver, cleans up curl, and blocks until that is done.
///   Call it while the driver's loop still runs (e.g. before stopping the HTTP server); if the loop is
///   already gone for good (the driver dropped the task), the same cleanup runs on the calling thread
///   without touching the driver. From the loop thread it closes at once (inside a handler: as soon as
///   that callback returns into the client) and does not block.
/// - A client that was shut down completes new `start`s at once with `.shutdown` on the calling thread.
public final class UpstreamClient: Sendable {
    private let scheduler: TransferScheduler

    /// Any thread. Runs curl_global_init (once per process) and creates the multi handle for `driver`'s loop.
    public init(configuration: UpstreamClientConfiguration = .init(), driver: any UpstreamEventDriver) throws {
        scheduler = try TransferScheduler(configuration: configuration, loop: driver)
    }

    deinit { scheduler.shutdown() }

    /// Any thread. Hands the request to the driver's loop and returns; the handler's calls then come on the loop
    /// thread. On a client that was shut down, the handler gets `.shutdown` on the calling thread instead.
    @discardableResult
    public func start(_ request: UpstreamRequest, handler: any UpstreamResponseHandler) -> UpstreamTransfer {
        let job = TransferJob(request: request, handler: handler, scheduler: scheduler)
        scheduler.start(job)
        return UpstreamTransfer(job: job)
    }

    /// Transfers started and not yet completed. Any thread.
    public var activeTransfers: Int { scheduler.activeCount.load(ordering: .relaxed) }

    /// Completes what is left with `.shutdown` and releases curl. Idempotent. Any thread (see above for when it
    /// blocks).
    public func shutdown() { scheduler.shutdown() }
}
