import Dispatch

/// Runs one piece of work on several threads at once and returns when all are done.
///
/// `run` is called by one thread at a time (the model's generation thread); `body` receives
/// `(threadIndex, threadCount)` and must split its work by those.
public final class ComputePool: Sendable {
    /// The number of threads `run` spreads work over (including the caller).
    public let threadCount: Int

    public init(threadCount: Int) {
        self.threadCount = max(1, threadCount)
    }

    /// Calls `body(i, threadCount)` for every `i` in `0 ..< threadCount`, concurrently, and
    /// returns after the last call returns.
    public func run(_ body: (Int, Int) -> Void) {
        let count = threadCount
        if count == 1 { body(0, 1); return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: count) { body($0, count) }
        }
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
