import Dispatch
import FlywheelTimers
import FlywheelUpstream
import Glibc
import Synchronization

/// An `UpstreamEventDriver` for tests that keeps the rules of the server's `HTTPEventLoop`:
/// - one thread running a level-triggered epoll loop; per iteration: the ready descriptors' callbacks, then the
///   queued tasks, then the due timers (not ones those callbacks schedule for later);
/// - `execute` from any thread queues a task (FIFO, never run inline) and wakes the loop through an eventfd;
///   tasks queued before `stop` still run, later ones are dropped (released without running);
/// - `watch`, `unwatch`, `schedule`, `cancel` trap off the loop thread; `watch` on a watched descriptor replaces
///   its interest and callback (`EPOLL_CTL_MOD`, same generation); a report fetched before `unwatch` (or before
///   the descriptor was watched afresh) is discarded; errors and hang-ups are always reported;
/// - one-shot timers in a `DeadlineHeap`, millisecond precision, bounded epoll wait.
///
/// `@unchecked Sendable`: `watches`, `timers` and `generation` are loop-thread only; the task queue is a Mutex;
/// the descriptors are immutable and closed only after the thread ended.
final class TestEventLoop: UpstreamEventDriver, @unchecked Sendable {
    final class Timer: UpstreamDriverTimer, DeadlineHeapElement {
        let deadlineNanos: UInt64
        var heapIndex = -1
        var callback: (() -> Void)?
        init(due: UInt64, callback: @escaping () -> Void) {
            deadlineNanos = due
            self.callback = callback
        }
    }

    private final class Watch {
        var callback: (Bool, Bool, Bool) -> Void
        let generation: UInt32
        init(_ callback: @escaping (Bool, Bool, Bool) -> Void, generation: UInt32) {
            self.callback = callback
            self.generation = generation
        }
    }

    private struct Queue {
        var tasks: [@Sendable () -> Void] = []
        var closed = false
    }

    private static let capacity = 64
    private static let wakeToken = UInt64.max

    private let epoll: Int32
    private let wakeup: Int32
    private let events: UnsafeMutableRawBufferPointer
    private let queue = Mutex(Queue())
    private let stopRequested = Atomic<Bool>(false)
    private let threadID = Atomic<UInt>(0)
    private let started = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Atomic<Bool>(false)

    private var watches: [Int32: Watch] = [:]
    private var timers = DeadlineHeap<Timer>()
    private var generation: UInt32 = 0

    init() {
        epoll = Linux.epollCreate1(Int32(O_CLOEXEC))
        wakeup = Linux.eventFD(0, Int32(O_CLOEXEC | O_NONBLOCK))
        precondition(epoll >= 0 && wakeup >= 0, "epoll_create1 / eventfd failed: errno \(errno)")
        events = .allocate(byteCount: Self.capacity * Linux.eventStride, alignment: 16)
        precondition(Linux.control(epoll, Linux.ctlAdd, wakeup, Linux.input, Self.wakeToken) == 0)
        var thread = pthread_t()
        let me = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { argument in
            Unmanaged<TestEventLoop>.fromOpaque(argument!).takeRetainedValue().run()
            return nil
        }, me)
        precondition(rc == 0, "pthread_create: \(rc)")
        pthread_detach(thread)
        started.wait()
    }

    deinit {
        events.deallocate()
        close(epoll)
        close(wakeup)
    }

    var inDriverThread: Bool { threadID.load(ordering: .acquiring) == pthread_self() }

    func execute(_ task: @escaping @Sendable () -> Void) {
        queue.withLock { queue in
            guard !queue.closed else { return }
            queue.tasks.append(task)
            var one: UInt64 = 1
            _ = write(wakeup, &one, 8)
        }
    }

    func watch(descriptor: Int32, readable: Bool, writable: Bool,
               _ callback: @escaping (Bool, Bool, Bool) -> Void) throws {
        precondition(inDriverThread, "watch off the loop thread")
        var interest: UInt32 = 0
        if readable { interest |= Linux.input }
        if writable { interest |= Linux.output }
        if let existing = watches[descriptor] {
            existing.callback = callback
            let token = Self.token(descriptor, existing.generation)
            if Linux.control(epoll, Linux.ctlModify, descriptor, interest, token) == 0 { return }
            watches[descriptor] = nil  // closed and reopened behind our back: register afresh
        }
        generation &+= 1
        let code = Linux.control(epoll, Linux.ctlAdd, descriptor, interest, Self.token(descriptor, generation))
        guard code == 0 else { throw TestEventLoopError.epollControl(code) }
        watches[descriptor] = Watch(callback, generation: generation)
    }

    func unwatch(descriptor: Int32) {
        precondition(inDriverThread, "unwatch off the loop thread")
        guard watches.removeValue(forKey: descriptor) != nil else { return }
        _ = Linux.control(epoll, Linux.ctlDelete, descriptor, 0, 0)  // fails harmlessly if it was closed
    }

    func schedule(afterMilliseconds: Int, _ callback: @escaping () -> Void) -> any UpstreamDriverTimer {
        precondition(inDriverThread, "schedule off the loop thread")
        let timer = Timer(due: Self.now() &+ UInt64(max(0, afterMilliseconds)) &* 1_000_000, callback: callback)
        timers.insert(timer)
        return timer
    }

    func cancel(_ timer: any UpstreamDriverTimer) {
        precondition(inDriverThread, "cancel off the loop thread")
        guard let timer = timer as? Timer else { return }
        timers.remove(timer)
        timer.callback = nil
    }

    /// Loop thread only: descriptors watched now.
    var watchCount: Int { watches.count }

    /// Stops the loop after its current iteration and waits for its thread; later tasks are dropped. Idempotent.
    func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        stopRequested.store(true, ordering: .releasing)
        var one: UInt64 = 1
        _ = write(wakeup, &one, 8)
        finished.wait()
        let dropped = queue.withLock { queue -> [@Sendable () -> Void] in
            queue.closed = true
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &queue.tasks)
            return taken
        }
        _ = dropped  // released outside the lock: a closure's deinit may call `execute`
    }

    private func run() {
        threadID.store(pthread_self(), ordering: .releasing)
        started.signal()
        while !stopRequested.load(ordering: .acquiring) {
            var timeout: Int32 = 1000
            if let due = timers.nextDeadline {
                let now = Self.now()
                timeout = due <= now ? 0 : Int32(min(1000, (due - now + 999_999) / 1_000_000))
            }
            let count = Linux.epollWait(epoll, events.baseAddress, Int32(Self.capacity), timeout)
            for index in 0..<max(0, Int(count)) {
                let base = index * Linux.eventStride
                let bits = events.loadUnaligned(fromByteOffset: base, as: UInt32.self)
                let token = events.loadUnaligned(fromByteOffset: base + Linux.dataOffset, as: UInt64.self)
                if token == Self.wakeToken {
                    var value: UInt64 = 0
                    _ = read(wakeup, &value, 8)
                    continue
                }
                let descriptor = Int32(truncatingIfNeeded: token & 0xFFFF_FFFF)
                guard let watch = watches[descriptor], watch.generation == UInt32(token >> 32) else { continue }
                watch.callback(bits & (Linux.input | Linux.readHangup) != 0, bits & Linux.output != 0,
                               bits & (Linux.error | Linux.hangup) != 0)
            }
            runTasks()
            let now = Self.now()
            while let timer = timers.popDue(now: now) {
                let callback = timer.callback
                timer.callback = nil
                callback?()
            }
        }
        runTasks()
        watches.removeAll()
        timers.removeAll { $0.callback = nil }
        finished.signal()
    }

    private func runTasks() {
        let tasks = queue.withLock { queue -> [@Sendable () -> Void] in
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &queue.tasks)
            return taken
        }
        for task in tasks { task() }
    }

    private static func token(_ descriptor: Int32, _ generation: UInt32) -> UInt64 {
        UInt64(UInt32(bitPattern: descriptor)) | UInt64(generation) << 32
    }

    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

enum TestEventLoopError: Error { case epollControl(Int32) }

/// epoll and eventfd, which Swift's Glibc module does not import: resolved with dlsym.
private enum Linux {
    typealias EpollCreate1 = @convention(c) (Int32) -> Int32
    typealias EpollControl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias EpollWait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32
    typealias EventFD = @convention(c) (UInt32, Int32) -> Int32

    static let epollCreate1 = symbol("epoll_create1", as: EpollCreate1.self)
    static let epollControl = symbol("epoll_ctl", as: EpollControl.self)
    static let epollWait = symbol("epoll_wait", as: EpollWait.self)
    static let eventFD = symbol("eventfd", as: EventFD.self)

    static let ctlAdd: Int32 = 1, ctlDelete: Int32 = 2, ctlModify: Int32 = 3
    static let input: UInt32 = 0x001, output: UInt32 = 0x004, error: UInt32 = 0x008, hangup: UInt32 = 0x010
    static let readHangup: UInt32 = 0x2000

    /// `struct epoll_event` is packed on x86-64 (12 bytes, data at offset 4), naturally aligned elsewhere.
    #if arch(x86_64)
    static let eventStride = 12, dataOffset = 4
    #else
    static let eventStride = 16, dataOffset = 8
    #endif

    private static func symbol<F>(_ name: String, as type: F.Type) -> F {
        guard let pointer = dlsym(dlopen(nil, RTLD_NOW), name) else { fatalError("no \(name) in libc") }
        return unsafeBitCast(pointer, to: type)
    }

    /// 0 or the errno. Level-triggered; errors and hang-ups are always reported by the kernel.
    static func control(_ epoll: Int32, _ operation: Int32, _ descriptor: Int32, _ interest: UInt32,
                        _ token: UInt64) -> Int32 {
        var record: (UInt64, UInt64) = (0, 0)
        return withUnsafeMutableBytes(of: &record) { raw in
            raw.storeBytes(of: interest, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: dataOffset, as: UInt64.self)
            return epollControl(epoll, operation, descriptor, raw.baseAddress) == 0 ? 0 : errno
        }
    }
}
