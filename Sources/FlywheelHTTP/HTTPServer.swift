import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// An HTTP/1.1 server on a fixed set of epoll event-loop threads.
///
/// Design: `eventLoopCount` threads each run a level-triggered epoll loop (`EventLoop`) with a reused event
/// array and read buffer, an eventfd for cross-thread wakeups and a tick (≤ 250 ms) for timeouts. Loop 0 owns
/// the one listening socket and deals accepted sockets round-robin (one task hop per connection, none per
/// request). A `Connection` lives on one loop; responders are called there, and writer calls made on that
/// thread write directly (head + body in one `sendmsg`), while calls from other threads are queued to the loop.
///
/// Thread-safe: every method may be called from any thread, except that `shutdown` must not be called on one
/// of the server's own event-loop threads (it joins them). Loop 0 owns the listening socket and hands accepted
/// connections round-robin to all loops; a connection then lives on its loop until it closes.
///
/// Other components can run on the loops too (`eventLoops`, `HTTPResponseWriter.eventLoop`): an upstream client
/// per loop can then receive, proxy and answer a request on one thread. Such components must be shut down while
/// the loops still run, i.e. before `shutdown` here (or at least before its grace period ends).
public final class HTTPServer: Sendable {
    private enum Phase {
        case idle
        case running(loops: [EventLoop], acceptor: LoopBound<Acceptor>)
        case stopping
        case stopped
    }

    private let state: HTTPServerState
    private let phase = Mutex<Phase>(.idle)
    private let boundPort = Atomic<UInt16>(0)
    /// Created in `init` (threads start in `start`), so other components can attach to them early.
    private let loops: Result<[EventLoop], SocketError>

    public init(configuration: HTTPServerConfiguration, responder: any HTTPResponder) {
        state = HTTPServerState(configuration: configuration, responder: responder)
        var created: [EventLoop] = []
        do throws(SocketError) {
            for index in 0..<max(1, configuration.eventLoopCount) {
                created.append(try EventLoop(index: index, tickNanos: state.tickNanos))
            }
            loops = .success(created)
        } catch {
            for loop in created { loop.join() }
            loops = .failure(error)
        }
    }

    /// The limits in force now.
    public var limits: HTTPServerLimits { state.limits }

    /// Changes the limits while the server runs (a configuration reload); no connection is dropped. The timeouts
    /// and caps hold for every connection from its next check, header and body sizes for new connections.
    public func updateLimits(_ limits: HTTPServerLimits) {
        state.setLimits(limits)
    }

    /// The server's event loops, one per thread, available right after `init` (their threads run from `start`
    /// until `shutdown`). Empty only if creating them failed (out of descriptors); `start` then throws that error.
    /// Tasks given to a loop's `execute` before `start` run once it starts.
    public var eventLoops: [HTTPEventLoop] {
        (try? loops.get()) ?? []
    }

    /// Binds and listens (SO_REUSEADDR), starts the event-loop threads, returns once accepting.
    /// Throws SocketError naming the failed call (e.g. bind: address in use). Call once.
    public func start() throws {
        try phase.withLock { phase throws in
            guard case .idle = phase else { preconditionFailure("HTTPServer.start() called twice") }
            let configuration = state.configuration
            let loops = try self.loops.get()
            // A bind failure leaves the server idle with its (not yet started) loops intact: start may be retried.
            let listener = try Self.listen(host: configuration.host, port: configuration.port)
            do {
                boundPort.store(try listener.localAddress().port, ordering: .releasing)
                let contexts = loops.map { LoopBound(HTTPLoopContext(loop: $0, server: state), loop: $0) }
                let acceptorLoop = loops[0]
                let server = state
                let acceptorBox = Mutex<Result<LoopBound<Acceptor>, SocketError>?>(nil)
                let ready = DispatchSemaphore(value: 0)
                for loop in loops { loop.start() }
                acceptorLoop.execute {
                    var next = 0
                    let report = configuration.report
                    let onShortage: ((Int32, Int) -> Void)? = report.map { say in
                        { errno, ticks in say(Self.shortageLine(errno: errno, pausedTicks: ticks, server: server)) }
                    }
                    let acceptor = Acceptor(listener: listener, loop: acceptorLoop, onShortage: onShortage) { socket, address in
                        Self.distribute(socket, address: address, server: server, contexts: contexts, next: &next)
                    }
                    let outcome: Result<LoopBound<Acceptor>, SocketError>
                    do throws(SocketError) {
                        try acceptor.start()
                        outcome = .success(LoopBound(acceptor, loop: acceptorLoop))
                    } catch {
                        outcome = .failure(error)
                    }
                    acceptorBox.withLock { $0 = outcome }
                    ready.signal()
                }
                ready.wait()
                switch acceptorBox.withLock({ $0 }) {
                case .success(let acceptor):
                    phase = .running(loops: loops, acceptor: acceptor)
                case .failure(let error):
                    phase = .stopped
                    for loop in loops { loop.stop() }
                    for loop in loops { loop.join() }
                    throw error
                case nil:
                    preconditionFailure("acceptor task did not run")
                }
            } catch {
                listener.close()
                throw error
            }
        }
    }

    /// The bound port (useful with port 0). 0 before `start`.
    public var port: UInt16 { boundPort.load(ordering: .acquiring) }

    /// Open client connections (including ones being refused or closing).
    public var openConnectionCount: Int { state.openConnections.load(ordering: .relaxed) }

    /// Requests handed to the responder whose response has not ended.
    public var inFlightCount: Int { state.inFlight.load(ordering: .relaxed) }

    /// True when the server speaks HTTPS (it was configured with a `TLSContext`).
    public var isTLS: Bool { state.configuration.tls != nil }

    /// The TLS context new connections are accepted with now.
    public var tlsContext: TLSContext? { state.tlsContext.withLock { $0 } }

    /// Accepts new connections with `context` from now on; established connections keep the context they were
    /// accepted with. Returns false (and changes nothing) on a plain-HTTP server: TLS is switched on at start.
    @discardableResult
    public func replaceTLSContext(_ context: TLSContext) -> Bool {
        guard isTLS else { return false }
        state.tlsContext.withLock { $0 = context }
        return true
    }

    /// TLS sessions alive (handshaking, or under a connection); 0 on a plain server. Every one is freed when its
    /// connection closes, so this falls back to 0 when the server is idle.
    public var tlsSessionCount: Int { state.tlsSessions.count }

    /// TLS handshakes that failed or timed out since start (including plain HTTP sent to the TLS port).
    public var tlsHandshakeFailureCount: Int { state.tlsSessions.failedHandshakes.load(ordering: .relaxed) }

    /// Request-body bytes reserved right now by connections still receiving a body
    /// (bounded by `HTTPServerConfiguration.maxBufferedBodyBytes`).
    public var bufferedBodyByteCount: Int { state.bufferedBodyBytes.load(ordering: .relaxed) }

    /// Graceful stop: stop accepting, close idle connections, let in-flight responses (and streams) finish up to
    /// `gracePeriod` seconds. Then responses still running get their `onClose` callbacks with `.serverShutdown`
    /// (on their loop, while their connection still works) and what the responders write there is flushed for up
    /// to `shutdownFlushTimeout` seconds. Then everything is closed and the threads joined. Blocks until done.
    /// Idempotent.
    public func shutdown(gracePeriod: Double) {
        let (running, neverStarted): (([EventLoop], LoopBound<Acceptor>)?, Bool) = phase.withLock { phase in
            switch phase {
            case .running(let loops, let acceptor):
                phase = .stopping
                return ((loops, acceptor), false)
            case .idle:
                phase = .stopped
                return (nil, true)
            case .stopping, .stopped:
                return (nil, false)
            }
        }
        if neverStarted {
            // Never started (or `start` failed, e.g. the port was taken): the loops have no threads, but tasks
            // may have been queued on them (an upstream client's shutdown hop). Joining closes their queues, so
            // such tasks are dropped and their owners clean up on their own thread instead of waiting forever.
            for loop in (try? loops.get()) ?? [] { loop.join() }
            return
        }
        guard let (loops, acceptor) = running else { return }
        precondition(!loops.contains { $0.inEventLoop }, "HTTPServer.shutdown must not run on an event-loop thread")

        state.isDraining.store(true, ordering: .sequentiallyConsistent)
        let listenerClosed = DispatchSemaphore(value: 0)
        acceptor.loop.execute {
            acceptor.value.close()
            listenerClosed.signal()
        }
        listenerClosed.wait()
        for loop in loops {
            loop.execute { loop.runTicks() }
        }

        waitForConnectionsToFinish(seconds: gracePeriod)
        if hasActiveConnections {
            // Grace is over with responses still running: tell their responders, on their loops, so they can end
            // them properly (a final error event, the chunked terminator), then give those bytes a short while.
            state.isEndingResponses.store(true, ordering: .sequentiallyConsistent)
            let notified = DispatchSemaphore(value: 0)
            for loop in loops {
                loop.execute {
                    loop.runTicks()
                    notified.signal()
                }
            }
            for _ in loops { notified.wait() }
            waitForConnectionsToFinish(seconds: state.configuration.shutdownFlushTimeout)
        }
        state.isForceClosing.store(true, ordering: .sequentiallyConsistent)
        for loop in loops { loop.stop() }
        for loop in loops { loop.join() }
        phase.withLock { $0 = .stopped }
    }

    // MARK: Private

    /// True while some connection is neither closed nor lingering (a request or response is still going on).
    private var hasActiveConnections: Bool {
        state.openConnections.load(ordering: .relaxed) > state.lingeringConnections.load(ordering: .relaxed)
    }

    /// Polls (every 2 ms, from the thread running `shutdown`) until no connection is active or `seconds` passed.
    private func waitForConnectionsToFinish(seconds: Double) {
        let deadline = MonotonicClock.now() &+ MonotonicClock.nanoseconds(seconds)
        while hasActiveConnections && MonotonicClock.now() < deadline {
            usleep(2_000)
        }
    }

    /// What the operator is told when accepting stops for lack of resources (`errno` != 0) and when it resumes.
    static func shortageLine(errno: Int32, pausedTicks: Int, server: HTTPServerState) -> String {
        let open = server.openConnections.load(ordering: .relaxed)
        guard errno != 0 else {
            return "accepting connections again after \(pausedTicks) paused tick(s); \(open) connection(s) open"
        }
        let cause: String
        switch errno {
        case EMFILE: cause = "the process is out of file descriptors (EMFILE: raise LimitNOFILE / ulimit -n)"
        case ENFILE: cause = "the system is out of file descriptors (ENFILE: fs.file-max)"
        default: cause = "the kernel is out of memory for sockets (\(errno == ENOBUFS ? "ENOBUFS" : "ENOMEM"))"
        }
        return "cannot accept connections: \(cause); \(open) connection(s) open keep being served, new ones wait "
            + "in the listen backlog and accepting is retried every tick; said once until it recovers"
    }

    private static func listen(host: String, port: UInt16) throws -> Socket {
        let addresses = try SocketAddress.resolve(host: host, port: port)
        var lastError = SocketError(call: "getaddrinfo", errno: EAI_NONAME)
        for address in addresses {
            do {
                return try Socket.makeListener(address: address, backlog: 1024)
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    /// Runs on the accepting loop: refuse over the limit, otherwise hand the socket to the next loop.
    private static func distribute(
        _ socket: Socket, address: SocketAddress, server: HTTPServerState,
        contexts: [LoopBound<HTTPLoopContext>], next: inout Int
    ) {
        let remote = address.description
        let open = server.openConnections.add(1, ordering: .relaxed).newValue
        let here = contexts[0]
        // TLS: the context in force now, so a reload applies from the next accepted connection on.
        let tls = server.configuration.tls == nil ? nil : server.tlsContext.withLock { $0 }
        if open > server.maxConnections.load(ordering: .relaxed) {
            begin(socket, tls: tls, context: here.value, remoteAddress: remote, rejectStatus: 503)
            return
        }
        let target = contexts[next]
        next = (next + 1) % contexts.count
        if target.loop === here.loop {
            begin(socket, tls: tls, context: target.value, remoteAddress: remote, rejectStatus: nil)
        } else {
            target.loop.execute {
                begin(socket, tls: tls, context: target.value, remoteAddress: remote, rejectStatus: nil)
            }
        }
    }

    /// On the connection's loop: plain HTTP at once, or a TLS handshake first.
    private static func begin(_ socket: Socket, tls: TLSContext?, context: HTTPLoopContext, remoteAddress: String,
                              rejectStatus: Int?) {
        if let tls {
            TLSHandshake.start(socket: socket, tls: tls, context: context, remoteAddress: remoteAddress,
                               rejectStatus: rejectStatus)
        } else {
            Connection.open(socket: socket, context: context, remoteAddress: remoteAddress, rejectStatus: rejectStatus)
        }
    }
}
