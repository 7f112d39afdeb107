internal import FlywheelTimers

/// The scheduler's pending deadlines: an indexed min-heap of transfer jobs keyed by `TransferJob.dueNanos`. Each job
/// is in it at most once (its first-byte deadline while an attempt waits for the head, or its retry time during a
/// backoff) and is removed in O(log n) when the head arrives or the job finishes. Driver's loop thread only.
struct TransferDeadlines {
    private var heap = DeadlineHeap<TransferJob>(reservingCapacity: 256)

    var count: Int { heap.count }

    /// Earliest due time, if any job is scheduled.
    var nextDue: UInt64? { heap.nextDeadline }

    /// Schedules (or reschedules) `job` at `due`.
    mutating func schedule(_ job: TransferJob, at due: UInt64) {
        heap.remove(job)
        job.dueNanos = due
        heap.insert(job)
    }

    /// Removes `job` if scheduled; no-op otherwise.
    mutating func remove(_ job: TransferJob) { heap.remove(job) }

    /// Removes and returns the earliest job if it is due at `now`.
    mutating func popDue(now: UInt64) -> TransferJob? { heap.popDue(now: now) }
}

extension TransferJob: DeadlineHeapElement {
    var deadlineNanos: UInt64 { dueNanos }
}
