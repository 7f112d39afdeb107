import Foundation
import Glibc
import Synchronization
@testable import FlywheelUpstream

/// A minimal `UpstreamEventDriver` for tests: one thread looping over poll() with a self-pipe for `execute`,
/// level-triggered watches and one-shot timers. Mirrors the HTTP event loop's rules (stale reports skipped after
/// unwatch, tasks dropped after stop).
final class PollDriver: UpstreamEventDriver, @unchecked Sendable {
    // Safety: `watches`, `timers`, `generation` are touched only on the driver thread; the rest is Mutex/Atomic
    // or immutable.
    final class Timer: UpstreamDriverTimer {
        let due: UInt64
        var callback: (() -> Void)?
        init(due: UInt64, callback: @escaping () -> Void) { self.due = due; self.callback = callback }
    }

    private struct Watch {
        var events: Int16
        var callback: (Bool, Bool, Bool) -> Void
        var generation: Int
    }

    private struct Queue {
        var tasks: [@Sendable () -> Void] = []
        var closed = false
    }

    private let queue = Mutex(Queue())
    private let stopRequested = Atomic<Bool>(false)
    private let threadID = Atomic<UInt>(0)
    private let finished = DispatchSemaphore(value: 0)
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private var watches: [Int32: Watch] = [:]
    private var timers: [Timer] = []
    private var generation = 0

    init() {
        var fds: [Int32] = [0, 0]
        precondition(pipe(&fds) == 0)
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        wakeRead = fds[0]
        wakeWrite = fds[1]
        let thread = Thread { [self] in run() }
        thread.start()
        while threadID.load(ordering: .acquiring) == 0 { usleep(100) }
    }

    var inDriverThread: Bool { threadID.load(ordering: .acquiring) == pthread_self() }

    func execute(_ task: @escaping @Sendable () -> Void) {
        let accepted = queue.withLock { queue -> Bool in
            if queue.closed { return false }
            queue.tasks.append(task)
            return true
        }
        if accepted {
            var byte: UInt8 = 1
            _ = write(wakeWrite, &byte, 1)
        }
    }

    func watch(descriptor: Int32, readable: Bool, writable: Bool,
               _ callback: @escaping (Bool, Bool, Bool) -> Void) throws {
        precondition(inDriverThread)
        var events: Int16 = 0
        if readable { events |= Int16(POLLIN) }
        if writable { events |= Int16(POLLOUT) }
        generation += 1
        watches[descriptor] = Watch(events: events, callback: callback, generation: generation)
    }

    func unwatch(descriptor: Int32) {
        precondition(inDriverThread)
        watches[descriptor] = nil
    }

    func schedule(afterMilliseconds: Int, _ callback: @escaping () -> Void) -> any UpstreamDriverTimer {
        precondition(inDriverThread)
        let timer = Timer(due: MonotonicClock.now() &+ UInt64(max(0, afterMilliseconds)) &* 1_000_000,
                          callback: callback)
        timers.append(timer)
        return timer
    }

    func cancel(_ timer: any UpstreamDriverTimer) {
        precondition(inDriverThread)
        guard let timer = timer as? Timer else { return }
        timer.callback = nil
        timers.removeAll { $0 === timer }
    }

    var watchCount: Int { watches.count }

    /// Stops the thread (after its current iteration) and waits; later tasks are dropped.
    func stop() {
        stopRequested.store(true, ordering: .releasing)
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
        finished.wait()
        let dropped = queue.withLock { queue -> [@Sendable () -> Void] in
            queue.closed = true
            var taken: [@Sendable () -> Void] = []
            swap(&taken, &queue.tasks)
            return taken
        }
        _ = dropped
        close(wakeRead)
        close(wakeWrite)
    }

    private func run() {
        threadID.store(pthread_self(), ordering: .releasing)
        var fds: [pollfd] = []
        var generations: [Int] = []
        var tasks: [@Sendable () -> Void] = []
        while !stopRequested.load(ordering: .acquiring) {
            fds.removeAll(keepingCapacity: true)
            generations.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            generations.append(0)
            for (fd, watch) in watches {
                fds.append(pollfd(fd: fd, events: watch.events, revents: 0))
                generations.append(watch.generation)
            }
            var timeout: Int32 = 1000
            let now = MonotonicClock.now()
            var earliest = UInt64.max
            for timer in timers where timer.due < earliest { earliest = timer.due }
            if earliest != .max {
                timeout = earliest <= now ? 0 : Int32(min(1000, (earliest - now + 999_999) / 1_000_000))
            }
            let count = poll(&fds, nfds_t(fds.count), timeout)
            if count > 0 {
                if fds[0].revents != 0 {
                    var buffer = [UInt8](repeating: 0, count: 256)
                    while read(wakeRead, &buffer, 256) > 0 {}
                }
                for index in 1..<fds.count where fds[index].revents != 0 {
                    let revents = Int32(fds[index].revents)
                    // Skip reports for watches removed or replaced since the poll started.
                    guard let watch = watches[fds[index].fd], watch.generation == generations[index] else { continue }
                    watch.callback(revents & Int32(POLLIN) != 0, revents & Int32(POLLOUT) != 0,
                                   revents & Int32(POLLERR | POLLHUP | POLLNVAL) != 0)
                }
            }
            queue.withLock { swap(&tasks, &$0.tasks) }
            for task in tasks { task() }
            tasks.removeAll(keepingCapacity: true)
            let fireNow = MonotonicClock.now()
            guard timers.contains(where: { $0.due <= fireNow }) else { continue }
            let due = timers.filter { $0.due <= fireNow }.sorted { $0.due < $1.due }
            timers.removeAll { $0.due <= fireNow }
            for timer in due {
                let callback = timer.callback
                timer.callback = nil
                callback?()
            }
        }
        finished.signal()
    }
}
