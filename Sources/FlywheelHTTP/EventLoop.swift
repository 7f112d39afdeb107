#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// One thread running a level-triggered epoll loop over its registered handlers, plus a task queue that other
/// threads feed through `execute` (woken with an eventfd) and a periodic tick for timeouts.
///
/// Thread rules: `execute`, `stop`, `inEventLoop` may be called from any thread; `register`, `modify`,
/// `deregister`, `runTicks` and `readBuffer` only on the loop thread; `start`/`join` once each, from outside.
final class EventLoop: @unchecked Sendable {
    // Safety: the mutable stored properties (`handlers`, `generation`, `runningTasks`) are only touched on the
    // loop thread — inside `run`, or in methods that begin with `preconditionInEventLoop()`. `epoll`,
    // `wakeup` and `readBuffer` are immutable handles; the memory behind `readBuffer` and the epoll event array
    // is likewise used only on the loop thread. Everything else is a `let` of Mutex/Atomic type.
    private struct Registration {
        let handler: any EventLoopHandler
        let generation: UInt32
    }

    private static let wakeupToken = UInt64.max

    let index: Int
    let tickNanos: UInt64
    /// Scratch buffer for socket reads, reused by every handler of this loop (loop thread only).
    let readBuffer: UnsafeMutableRawBufferPointer

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

    init(index: Int, tickNanos: UInt64, readBufferSize: Int = 64 * 1024) throws(SocketError) {
        self.index = index
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
        readBuffer.deallocate()
    }

    // MARK: Any thread

    var inEventLoop: Bool {
        threadID.load(ordering: .acquiring) == pthread_self()
    }

    @inline(__always)
    func preconditionInEventLoop() {
        precondition(inEventLoop, "must be called on event loop \(index)'s thread")
    }

    /// Runs `task` on the loop thread, after the events of the current iteration. FIFO per loop.
    /// After the loop has been joined the task is dropped (the loop's handlers are all closed by then).
    func execute(_ task: @escaping @Sendable () -> Void) {
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
    func start() {
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
    func stop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        pendingTasks.withLock { queue in
            if !queue.isClosed { wakeup.signal() }
        }
    }

    /// Waits for the thread to exit (after `stop`) and releases the epoll and eventfd descriptors.
    func join() {
        precondition(!inEventLoop, "an event loop cannot join itself")
        guard let handle = thread.withLock({ handle -> pthread_t? in defer { handle = nil }; return handle }) else {
            return
        }
        pthread_join(handle, nil)
        pendingTasks.withLock { queue in
            queue.isClosed = true
            queue.tasks.removeAll()
        }
        wakeup.close()
        epoll.close()
    }

    // MARK: Loop thread only

    func register(_ handler: any EventLoopHandler, descriptor: Int32, events: EpollEvents) throws(SocketError) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        if slot >= handlers.count {
            handlers.append(contentsOf: repeatElement(nil, count: slot - handlers.count + 1))
        }
        generation &+= 1
        try epoll.add(descriptor, events: events, token: Self.token(descriptor, generation))
        handlers[slot] = Registration(handler: handler, generation: generation)
    }

    func modify(descriptor: Int32, events: EpollEvents) throws(SocketError) {
        preconditionInEventLoop()
        guard let registration = handlers[Int(descriptor)] else { return }
        try epoll.modify(descriptor, events: events, token: Self.token(descriptor, registration.generation))
    }

    /// Forgets the handler. The caller closes the descriptor next, which removes it from the epoll set
    /// (we never duplicate descriptors), so no `EPOLL_CTL_DEL` is needed.
    func deregister(descriptor: Int32) {
        preconditionInEventLoop()
        let slot = Int(descriptor)
        if slot < handlers.count { handlers[slot] = nil }
    }

    /// Calls `tick` on every handler now (used to apply a state change promptly, e.g. a shutdown).
    func runTicks() {
        preconditionInEventLoop()
        let now = MonotonicClock.now()
        var slot = 0
        while slot < handlers.count {
            handlers[slot]?.handler.tick(nowNanos: now)
            slot += 1
        }
    }

    private static func token(_ descriptor: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: descriptor)) | UInt64(generation) << 32
    }

    private func run() {
        threadID.store(pthread_self(), ordering: .releasing)
        var now = MonotonicClock.now()
        var nextTick = now &+ tickNanos
        while !stopRequested.load(ordering: .acquiring) {
            let timeout = nextTick > now ? Int32(min((nextTick - now + 999_999) / 1_000_000, 1000)) : 0
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
        pendingTasks.withLock { $0.tasks.removeAll() }
    }

    private func runPendingTasks() {
        wakeupPending.store(false, ordering: .sequentiallyConsistent)
        pendingTasks.withLock { swap(&$0.tasks, &runningTasks) }
        guard !runningTasks.isEmpty else { return }
        for task in runningTasks { task() }
        runningTasks.removeAll(keepingCapacity: true)
    }
}
