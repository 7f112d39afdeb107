import CFlywheelKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a `ComputePool` shares with its worker threads.
///
/// Safe to share (hence `@unchecked Sendable`): the atomics are atomics; `mutex` and `condition`
/// are pthread objects made for sharing; `task` is written only by the `run` caller before it bumps
/// `generation` (sequentially consistent, so a release) and read by workers only after they load
/// the new generation (acquire), and the caller clears nothing and returns only after `pending`
/// reaches zero (acquire), i.e. after every worker is done with the task; `workerCount` is written
/// in the pool's `init` before any `run` and in `shutdown`, which must not race with `run`.
final class ComputePoolState: @unchecked Sendable {
    // Layout matters (Swift keeps declaration order): what the caller alone writes, what workers
    // spin on, and what workers write each sit 64+ bytes apart, so a `run` moves few cache lines.

    /// Set for the duration of a `run`, to catch overlapping calls. Caller-only.
    let running = Atomic<Bool>(false)
    private let padding0: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Bumped once per `run` (and once by `stop`); workers wait for it to change.
    let generation = Atomic<UInt64>(0)
    /// Points at the `(Int, Int) -> Void` closure of the current `run`.
    var task: UnsafeRawPointer?
    let threadCount: Int
    var workerCount = 0
    /// Workers parked (or about to park) on `condition`; `run` signals only when nonzero.
    let sleepers = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    let spinNanoseconds: Int
    private let padding1: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// Workers still busy with the current generation's task.
    let pending = Atomic<Int>(0)
    private let padding2: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    /// The next piece of a `run(pieces:)` to hand out. Reset by the caller before it dispatches.
    let nextPiece = Atomic<Int>(0)
    private let padding3: (Int, Int, Int, Int, Int, Int, Int, Int) = (0, 0, 0, 0, 0, 0, 0, 0)
    let mutex: UnsafeMutablePointer<pthread_mutex_t>
    let condition: UnsafeMutablePointer<pthread_cond_t>

    init(threadCount: Int, spinNanoseconds: Int) {
        self.threadCount = threadCount
        self.spinNanoseconds = spinNanoseconds
        mutex = .allocate(capacity: 1)
        condition = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Starts worker `index`; nil if the system refused a thread.
    static func spawnWorker(_ state: ComputePoolState, index: Int) -> pthread_t? {
        let context = Unmanaged.passRetained(WorkerContext(state: state, index: index)).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { raw in
            let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
            context.state.workerLoop(index: context.index)
            return nil
        }, context)
        guard status == 0 else {
            Unmanaged<WorkerContext>.fromOpaque(context).release()
            return nil
        }
        return thread
    }

    // MARK: The caller's side

    /// Publishes `task` to the workers and wakes any that are parked.
    func dispatch(_ task: UnsafeRawPointer) {
        self.task = task
        pending.store(workerCount, ordering: .relaxed)
        // Sequentially consistent on both sides (here and in `park`): either this load sees the
        // sleeper, or the sleeper's re-check sees the new generation. No lost wake-up.
        generation.add(1, ordering: .sequentiallyConsistent)
        if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
            pthread_mutex_lock(mutex)
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
    }

    /// Spins until every worker has finished the current task.
    func waitForWorkers() {
        var spins = 0
        while pending.load(ordering: .acquiring) != 0 {
            fw_cpu_pause()
            spins &+= 1
            // A worker may be descheduled on a busy machine: stop burning its core after a while.
            if spins & 0xFFF == 0 { sched_yield() }
        }
    }

    func stop() {
        stopping.store(true, ordering: .releasing)
        generation.add(1, ordering: .sequentiallyConsistent)
        pthread_mutex_lock(mutex)
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
    }

    // MARK: The workers' side

    func workerLoop(index: Int) {
        var seen: UInt64 = 0
        while true {
            seen = waitForGeneration(after: seen)
            if stopping.load(ordering: .acquiring) { return }
            task!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(index, threadCount)
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Spins until `generation` moves past `seen`, parking after `spinNanoseconds` of nothing.
    private func waitForGeneration(after seen: UInt64) -> UInt64 {
        var current = generation.load(ordering: .acquiring)
        if current != seen { return current }
        let deadline = Self.now() &+ spinNanoseconds
        var spins = 0
        while true {
            fw_cpu_pause()
            current = generation.load(ordering: .acquiring)
            if current != seen { return current }
            spins &+= 1
            if spins & 63 == 0 {
                if Self.now() >= deadline { break }
                // More threads than free cores: let the thread we are waiting for run.
                if spins & 0x3FF == 0 { sched_yield() }
            }
        }
        return park(after: seen)
    }

    private func park(after seen: UInt64) -> UInt64 {
        pthread_mutex_lock(mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        var current = generation.load(ordering: .sequentiallyConsistent)
        while current == seen {
            pthread_cond_wait(condition, mutex)
            current = generation.load(ordering: .sequentiallyConsistent)
        }
        sleepers.subtract(1, ordering: .sequentiallyConsistent)
        pthread_mutex_unlock(mutex)
        return current
    }

    private static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return time.tv_sec * 1_000_000_000 + time.tv_nsec
    }
}

/// The start argument of one worker thread.
private final class WorkerContext {
    let state: ComputePoolState
    let index: Int
    init(state: ComputePoolState, index: Int) {
        self.state = state
        self.index = index
    }
}
