internal import FlywheelTimers
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One event-loop thread: the HTTP server runs its connections on a set of these, and other components can run
/// on them too (e.g. an upstream client). Knows nothing about HTTP.
///
/// Each loop is one thread running a level-triggered epoll loop over its registered handlers, a task queue that
/// other threads feed through `execute` (woken with an eventfd), millisecond one-shot timers (`schedule`), and a
/// periodic tick for the server's own timeouts. The epoll wait is bounded by min(next timer due, next tick).
///
/// Thread rules for outside components:
/// - `index`, `inEventLoop` and `execute` may be called from any thread.
/// - `watch`, `unwatch`, `schedule` and `cancel` only on the loop thread (trap otherwise), e.g. from inside an
///   `execute` task or one of their own callbacks. Every callback runs on the loop thread, never concurrently,
///   and may call any of these methods (including unwatching its own descriptor or cancelling other timers).
/// - Callbacks must not block: they run between the server's own socket events.
/// - Once its owner stopped the loop (e.g. `HTTPServer.shutdown`), `execute` drops its task (releasing the
///   closure without running it), and watched descriptors and timers are forgotten without their callbacks.
///
/// Internal rules: `stop` may be called from any thread; `register`, `modify`, `deregister`, `runTicks` and
/// `readBuffer` only on the loop thread; `start`/`join` once each, from outside.
public final class EventLoop: @unchecked Sendable {
    // Safety: the mutable stored properties (`handlers`, `generation`, `runningTasks`) are only touched on the
    // loop thread — inside `run`, or in methods that begin with `preconditionInEventLoop()`. `epoll`,
    // `wakeup` and `readBuffer` are immutable handles; the memory behind `readBuffer` and the epoll event array
    // is likewise used only on the loop thread. Everything else is a `let` of Mutex/Atomic type.
    private struct Registration {
        let handler: any EventLoopHandler
        let generation: UInt32
    }

    private static let wakeupToken = UInt64.max

    private let indexValue: Int
    package let tickNanos: UInt64
    /// Scratch buffer for socket reads, reused by every handler of this loop (loop thread only).
    package let readBuffer: UnsafeMutableRawBufferPointer

    private let epoll: Epoll
    private let wakeup: EventFD
    private struct TaskQueue {
        var tasks: [@Sendable () -> Void] = []
        /// Set by `join` before the eventfd is closed; later tasks are dropped.
        var isClosed = false
    }

    private let pendingTasks = Mutex(TaskQueue())
    private let wakeupPending = Atomic<Bool>(false)
    private let stopRequested = Atomic<Bool>(false)
    private let threadID = Atomic<UInt>(0)
    private let thread = Mutex<pthread_t?>(nil)

    private var handlers: [Registration?] = []
    private var generation: UInt32 = 0
    private var runningTasks: [@Sendable () -> Void] = []
    private var timers = LoopTimerHeap()
    private let resourcesReleased = Atomic<Bool>(false)

    package init(index: Int, tickNanos: UInt64, readBufferSize: Int = 64 * 1024) throws(SocketError) {
        indexValue = index
        self.tickNanos = max(tickNanos, 1_000_000)
        epoll = try Epoll()
        do {
            wakeup = try EventFD()
            try epoll.add(wakeup.descriptor, events: .input, token: Self.wakeupToken)
        } catch {
            epoll.close()
            throw error
        }
        readBuffer = .allocate(byteCount: readBufferSize, alignment: 16)
    }

    deinit {
        releaseResources()
        readBuffer.deallocate()
    }

    /// Closes the eventfd and epoll descriptors once (after the thread ended, or if it never started).
    private func releaseResources() {
        if resourcesReleased.exchange(true, ordering: .acquiringAndReleasing) { return }
        wakeup.close()
        epoll.close()
    }

    // MARK: Any thread

    /// Position of this loop among its owner's loops (in `HTTPServer.eventLoops`, 0 owns the listening socket).
    public var index: Int { indexValue }

    /// True when called on this loop's thread.
    public var inEventLoop: Bool {
        threadID.load(ordering: .acquiring) == pthread_self()
    }

    @inline(__always)
    package func preconditionInEventLoop() {
        precondition(inEventLoop, "must be called on event loop \(index)'s thread")
    }

    /// Any thread (including the loop's own). Runs `task` on the loop thread, after the events of the current
    /// iteration (never inline). FIFO per loop. Tasks queued before `start` run once the loop starts. After the
    /// loop has stopped the task is dropped: released without running.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        pendingTasks.withLock { queue in
            guard !queue.isClosed else { return }
            queue.tasks.append(task)
            // Signalled under the lock so that `join` cannot close the eventfd in between.
            if !wakeupPending.exchange(true, ordering: .sequentiallyConsistent) {
                wakeup.signal()
            }
        }
    }

    /// Starts the loop thread.
    package func start() {
        let box = Unmanaged.passRetained(self)
        var handle = pthread_t()
        let result = pthread_create(&handle, nil, { argument in
            let loop = Unmanaged<EventLoop>.fromOpaque(argument!).takeRetainedValue()
            loop.run()
            return nil
        }, box.toOpaque())
        precondition(result == 0, "pthread_create failed: \(result)")
        thread.withLock { $0 = handle }
    }

    /// Asks the loop to finish its iteration, tell every handler `loopWillStop`, and exit.
    package func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        pendingTasks.withLock { queue in
            if !queue.isClosed { wakeup.signal() }
        }
    }

    /// Waits for the thread to exit (after `stop`) and releases the epoll and eventfd descriptors.
    package func join() {
        precondition(!inEventLoop, "an event loop cannot join itself")
        if let handle = thread.withLock({ handle -> pthread_t? in defer { handle = nil }; return handle }) {
            pthread_join(handle, nil)
        }
        let dropped = pendingTasks.withLock { queue -> [@Sendable () -> Void] in
            queue.isClosed = true
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &queue.tasks)
            return taken
        }
        _ = dropped  // released outside the lock: a closure's deinit may call `execute`
        releaseResources()
    }

    // MARK: Loop thread only

    package func register(_ handler: any EventLoopHandler, descriptor: Int32, events: EpollEvents) throws(SocketError) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        if slot >= handlers.count {
            handlers.append(contentsOf: repeatElement(nil, count: slot - handlers.count + 1))
        }
        generation &+= 1
        try epoll.add(descriptor, events: events, token: Self.token(descriptor, generation))
        handlers[slot] = Registration(handler: handler, generation: generation)
    }

    package func modify(descriptor: Int32, events: EpollEvents) throws(SocketError) {
        preconditionInEventLoop()
        guard let registration = handlers[Int(descriptor)] else { return }
        try epoll.modify(descriptor, events: events, token: Self.token(descriptor, registration.generation))
    }

    /// Gives a registered descriptor to another handler with new interest, keeping its registration (one
    /// `epoll_ctl MOD`): e.g. a TLS handshake handing its socket to the connection it became.
    package func replaceHandler(descriptor: Int32, with handler: any EventLoopHandler, events: EpollEvents) throws(SocketError) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        guard slot < handlers.count, let registration = handlers[slot] else {
            throw SocketError(call: "epoll_ctl EPOLL_CTL_MOD", errno: ENOENT)
        }
        handlers[slot] = Registration(handler: handler, generation: registration.generation)
        try epoll.modify(descriptor, events: events, token: Self.token(descriptor, registration.generation))
    }

    /// Forgets the handler. The caller closes the descriptor next, which removes it from the epoll set
    /// (we never duplicate descriptors), so no `EPOLL_CTL_DEL` is needed.
    package func deregister(descriptor: Int32) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        if slot < handlers.count { handlers[slot] = nil }
    }

    /// Calls `tick` on every handler now (used to apply a state change promptly, e.g. a shutdown).
    package func runTicks() {
        preconditionInEventLoop()
        let now = MonotonicClock.now()
        var slot = 0
        while slot < handlers.count {
            handlers[slot]?.handler.tick(nowNanos: now)
            slot += 1
        }
    }

    // MARK: Foreign descriptors and timers (public, loop thread only)

    /// Loop thread only. Watches a descriptor owned by someone else: `callback` runs on the loop (level-triggered)
    /// while it is readable or writable as asked, or errored / hung up (always reported). Calling `watch` again for
    /// a watched descriptor replaces its interest and callback (one `epoll_ctl MOD`). Both flags false keeps the
    /// registration but only errors are reported. The descriptor must stay open until `unwatch`; if it is closed
    /// first, the kernel drops it from the epoll set and `unwatch` is still required (it then just forgets it).
    /// Throws `SocketError` (e.g. `EEXIST` when the descriptor is one of the server's own sockets).
    public func watch(
        descriptor: Int32, readable: Bool, writable: Bool,
        _ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void
    ) throws {
        preconditionInEventLoop()
        var events: EpollEvents = []
        if readable { events.insert(.input) }
        if writable { events.insert(.output) }
        let slot = Int(descriptor)
        guard slot >= 0 else { throw SocketError(call: "watch", errno: EBADF) }
        let watcher: ForeignWatcher
        if slot < handlers.count, let existing = handlers[slot] {
            guard let foreign = existing.handler as? ForeignWatcher else {
                throw SocketError(call: "watch", errno: EEXIST)
            }
            foreign.callback = callback
            let code = epoll.foreignControl(.modify, descriptor, events, Self.token(descriptor, existing.generation))
            if code == 0 { return }
            guard code == ENOENT else { throw SocketError(call: "epoll_ctl EPOLL_CTL_MOD", errno: code) }
            // Closed and reopened behind our back: register the new descriptor afresh (new generation).
            handlers[slot] = nil
            watcher = foreign
        } else {
            watcher = ForeignWatcher(callback)
        }
        if slot >= handlers.count {
            handlers.append(contentsOf: repeatElement(nil, count: slot - handlers.count + 1))
        }
        generation &+= 1
        let code = epoll.foreignControl(.add, descriptor, events, Self.token(descriptor, generation))
        guard code == 0 else { throw SocketError(call: "epoll_ctl EPOLL_CTL_ADD", errno: code) }
        handlers[slot] = Registration(handler: watcher, generation: generation)
    }

    /// Loop thread only. Stops watching `descriptor` (a no-op if it is not watched through `watch`). Does not close
    /// it. Safe from inside any callback, including the descriptor's own: a report already fetched for it in the
    /// current batch is discarded.
    public func unwatch(descriptor: Int32) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        guard slot >= 0, slot < handlers.count, let existing = handlers[slot],
              existing.handler is ForeignWatcher else { return }
        handlers[slot] = nil
        _ = epoll.foreignControl(.remove, descriptor, [], 0)  // ENOENT/EBADF when it was closed already: fine
    }

    /// Loop thread only. Runs `callback` once on the loop after at least `afterMilliseconds` (0 or negative:
    /// at the end of the current iteration). Precision is the epoll timeout's (about 1 ms), independent of the
    /// server's tick. Returns a token for `cancel`.
    @discardableResult
    public func schedule(afterMilliseconds: Int, _ callback: @escaping () -> Void) -> EventLoopTimer {
        preconditionInEventLoop()
        let delay = UInt64(max(0, min(afterMilliseconds, 100_000_000))) &* 1_000_000
        let timer = LoopTimer(due: MonotonicClock.now() &+ delay, callback: callback)
        timers.insert(timer)
        return EventLoopTimer(timer: timer)
    }

    /// Loop thread only. The timer will not fire (no-op if it fired or was cancelled already).
    public func cancel(_ token: EventLoopTimer) {
        preconditionInEventLoop()
        timers.remove(token.timer)
        token.timer.callback = nil
    }

    private static func token(_ descriptor: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: descriptor)) | UInt64(generation) << 32
    }

    private func run() {
        threadID.store(pthread_self(), ordering: .releasing)
        // Writes that do not pass MSG_NOSIGNAL (OpenSSL's, for TLS connections) to a vanished peer must fail with
        // EPIPE on this thread, not kill the process, whatever the embedding program does with SIGPIPE.
        var pipeSignal = sigset_t()
        sigemptyset(&pipeSignal)
        sigaddset(&pipeSignal, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSignal, nil)
        var now = MonotonicClock.now()
        var nextTick = now &+ tickNanos
        while !stopRequested.load(ordering: .acquiring) {
            var wakeAt = nextTick
            if let due = timers.nextDeadline, due < wakeAt { wakeAt = due }
            let timeout = wakeAt > now ? Int32(min((wakeAt - now + 999_999) / 1_000_000, 1000)) : 0
            let count: Int
            do {
                count = try epoll.wait(timeoutMilliseconds: timeout)
            } catch {
                preconditionFailure("\(error)")
            }
            for index in 0..<count {
                let (events, token) = epoll.event(at: index)
                if token == Self.wakeupToken {
                    wakeup.drain()
                    continue
                }
                let slot = Int(token & 0xFFFF_FFFF)
                // A stale report for a descriptor closed earlier in this batch (and maybe reused) is skipped.
                guard slot < handlers.count, let registration = handlers[slot],
                      registration.generation == UInt32(token >> 32) else { continue }
                registration.handler.handleEvents(events)
            }
            runPendingTasks()
            now = MonotonicClock.now()
            if let due = timers.nextDeadline, due <= now {
                fireTimers(now: now)
                now = MonotonicClock.now()
            }
            if now >= nextTick {
                runTicks()
                nextTick = now &+ tickNanos
            }
        }
        // Tasks queued before the stop may still register handlers; run them, then close every handler.
        runPendingTasks()
        var slot = 0
        while slot < handlers.count {
            handlers[slot]?.handler.loopWillStop()
            slot += 1
        }
        handlers.removeAll()
        timers.removeAll { $0.callback = nil }
        let dropped = pendingTasks.withLock { queue -> [@Sendable () -> Void] in
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &queue.tasks)
            return taken
        }
        _ = dropped
    }

    /// Runs the timers due at `now` (not ones scheduled by these callbacks for later).
    private func fireTimers(now: UInt64) {
        while let timer = timers.popDue(now: now) {
            let callback = timer.callback
            timer.callback = nil
            callback?()
        }
    }

    private func runPendingTasks() {
        wakeupPending.store(false, ordering: .sequentiallyConsistent)
        pendingTasks.withLock { swap(&$0.tasks, &runningTasks) }
        guard !runningTasks.isEmpty else { return }
        for task in runningTasks { task() }
        runningTasks.removeAll(keepingCapacity: true)
    }
}
