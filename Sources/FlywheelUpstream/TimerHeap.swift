/// Indexed binary min-heap of transfer jobs keyed by `TransferJob.dueNanos`. Each job is in the heap at most once
/// (its first-byte deadline while an attempt waits for the head, or its retry time during a backoff), and can be
/// removed in O(log n) when the head arrives. Curl thread only.
struct TimerHeap {
    private var items: [TransferJob] = []

    init() { items.reserveCapacity(256) }

    var count: Int { items.count }

    /// Earliest due time, if any job is scheduled.
    var nextDue: UInt64? { items.first?.dueNanos }

    /// Schedules (or reschedules) `job` at `due`.
    mutating func schedule(_ job: TransferJob, at due: UInt64) {
        if job.heapIndex >= 0 { remove(job) }
        job.dueNanos = due
        job.heapIndex = items.count
        items.append(job)
        siftUp(items.count - 1)
    }

    /// Removes `job` if scheduled; no-op otherwise.
    mutating func remove(_ job: TransferJob) {
        let index = job.heapIndex
        guard index >= 0, index < items.count, items[index] === job else { return }
        let last = items.count - 1
        if index != last {
            items.swapAt(index, last)
            items[index].heapIndex = index
        }
        items.removeLast()
        job.heapIndex = -1
        if index < items.count {
            siftDown(index)
            siftUp(index)
        }
    }

    /// Removes and returns the earliest job if it is due at `now`.
    mutating func popDue(now: UInt64) -> TransferJob? {
        guard let first = items.first, first.dueNanos <= now else { return nil }
        remove(first)
        return first
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].dueNanos < items[parent].dueNanos else { break }
            swapItems(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let n = items.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { break }
            var smallest = left
            let right = left + 1
            if right < n, items[right].dueNanos < items[left].dueNanos { smallest = right }
            guard items[smallest].dueNanos < items[parent].dueNanos else { break }
            swapItems(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapItems(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].heapIndex = a
        items[b].heapIndex = b
    }
}
