import CFlywheelKernels
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs one piece of work on several threads at once and returns when all are done.
///
/// The pool owns `threadCount - 1` persistent worker threads; the thread that calls `run` is
/// thread 0. While work keeps coming (a token being computed: hundreds of `run`s per token) the
/// workers spin on an atomic generation counter, so a round trip costs well under a microsecond.
/// A worker that has seen no work for `spinMicroseconds` parks on a condition variable, so an idle
/// daemon uses no CPU; the next `run` wakes it (that one call pays the wake-up, tens of µs).
///
/// Threading rule: `run` may be called from any thread, but from one thread at a time, and never
/// from inside a `body` (the pool traps on overlapping or nested calls). `shutdown` must not race
/// with `run`. The pool joins its workers in `shutdown` or, at the latest, in `deinit`.
public final class ComputePool: Sendable {
    /// The number of threads `run` spreads work over (including the caller).
    public let threadCount: Int
    private let shared: ComputePoolState
    private let workers: Mutex<[pthread_t]>

    /// A pool of `threadCount` threads (at least 1): the caller of `run` plus `threadCount - 1`
    /// workers, which spin for `spinMicroseconds` after their last work before they park.
    public init(threadCount: Int, spinMicroseconds: Int = 300) {
        self.threadCount = max(1, threadCount)
        shared = ComputePoolState(threadCount: self.threadCount, spinNanoseconds: max(0, spinMicroseconds) * 1000)
        var threads: [pthread_t] = []
        for index in 1 ..< self.threadCount {
            if let thread = ComputePoolState.spawnWorker(shared, index: index) { threads.append(thread) }
        }
        // A worker that could not be created leaves its share of the work to the caller (see run).
        shared.workerCount = threads.count
        workers = Mutex(threads)
    }

    /// A pool with one thread per CPU this process may use (`defaultThreadCount`).
    public convenience init() {
        self.init(threadCount: ComputePool.defaultThreadCount)
    }

    deinit { shutdown() }

    /// Calls `body(i, threadCount)` for every `i` in `0 ..< threadCount`, concurrently, and
    /// returns after the last call returns. `body` runs on the caller (index 0) and the workers,
    /// so whatever it writes must be split by index (e.g. `ComputePool.slice`).
    public func run(_ body: (Int, Int) -> Void) {
        let count = threadCount
        if count == 1 { body(0, 1); return }
        precondition(
            !shared.running.exchange(true, ordering: .acquiring),
            "ComputePool.run called while another run is in progress (nested or from two threads)")
        defer { shared.running.store(false, ordering: .releasing) }
        withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { task in
                shared.dispatch(UnsafeRawPointer(task))
                body(0, count)
                // Indices whose worker is missing (failed to start, or after shutdown) run here.
                for index in (shared.workerCount + 1) ..< count { body(index, count) }
                shared.waitForWorkers()
            }
        }
    }

    /// Calls `body` with every piece of `0 ..< total`: `perThread` pieces per thread, in multiples of
    /// `granularity`, which the threads take one at a time as they finish the last. A thread slowed by
    /// something outside the work (another process on its core, a page fault) then holds up the others by
    /// one piece at most, where with a fixed `slice` each the others wait for its whole share. Pieces go out
    /// in order but may finish in any order; `body` must write only what its range owns.
    public func run(pieces total: Int, granularity: Int = 1, perThread: Int = 4, _ body: (Range<Int>) -> Void) {
        let units = (total + granularity - 1) / granularity
        guard units > 0 else { return }
        if threadCount == 1 { body(0 ..< total); return }
        let pieces = min(units, threadCount * max(1, perThread))
        let state = shared
        // Published to the workers by `dispatch`'s sequentially consistent bump of the generation.
        state.nextPiece.store(0, ordering: .relaxed)
        run { _, _ in
            while true {
                let piece = state.nextPiece.add(1, ordering: .relaxed).oldValue
                if piece >= pieces { return }
                let range = ComputePool.slice(total, index: piece, count: pieces, granularity: granularity)
                if !range.isEmpty { body(range) }
            }
        }
    }

    /// Stops and joins the worker threads. Later `run`s do all the work on the calling thread.
    /// Idempotent; must not be called while a `run` is in progress.
    public func shutdown() {
        let threads = workers.withLock { threads in
            let taken = threads
            threads = []
            return taken
        }
        guard !threads.isEmpty else { return }
        shared.stop()
        for thread in threads { pthread_join(thread, nil) }
        shared.workerCount = 0
    }

    /// The half-open slice of `0 ..< total` that thread `index` of `count` owns, in multiples
    /// of `granularity` where possible.
    public static func slice(_ total: Int, index: Int, count: Int, granularity: Int = 1) -> Range<Int> {
        let units = (total + granularity - 1) / granularity
        let start = units * index / count * granularity
        let end = min(total, units * (index + 1) / count * granularity)
        return min(start, total) ..< end
    }
}
