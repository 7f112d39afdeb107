import Dispatch
import Foundation
import Synchronization

/// The part of a `SQLiteLogWriter` shared between callers and the writer thread. Sendable by construction:
/// mutable state sits behind `Mutex`, counters are `Atomic`, the semaphore is thread-safe.
final class WriterCore: Sendable {
    let state: Mutex<WriterState>
    /// Signalled to wake an idle writer.
    let wakeup = DispatchSemaphore(value: 0)
    let dropped = Atomic<Int>(0)
    let written = Atomic<Int>(0)
    let writeErrors = Atomic<Int>(0)
    let lastError = Mutex<StoreError?>(nil)
    /// Whether the storage takes writes now; updated by the writer thread (see `LogHealth`).
    let health = Mutex(LogHealth())
    /// Request and feedback rows deleted by prune passes since start.
    let prunedRequests = Atomic<Int>(0)
    let prunedFeedback = Atomic<Int>(0)
    /// Applied to every request row on the writer thread before it is stored (write-time redaction).
    let rewrite: (@Sendable (inout RequestRecord) -> Void)?

    let capacity: Int
    let maxBatch: Int
    let flushInterval: Double
    let feedbackCapacity: Int
    let feedbackDurability: FeedbackDurability
    /// Where the writer says that the storage failed and that it recovered (once each, not per row).
    let report: @Sendable (String) -> Void

    init(capacity: Int, maxBatch: Int, flushInterval: Double, feedbackCapacity: Int,
         feedbackDurability: FeedbackDurability = .full, report: @escaping @Sendable (String) -> Void = { _ in },
         rewrite: (@Sendable (inout RequestRecord) -> Void)? = nil) {
        self.rewrite = rewrite
        self.capacity = capacity
        self.maxBatch = maxBatch
        self.flushInterval = flushInterval
        self.feedbackCapacity = feedbackCapacity
        self.feedbackDurability = feedbackDurability
        self.report = report
        self.state = Mutex(WriterState(queue: RingBuffer(capacity: capacity)))
    }

    var isClosing: Bool { state.withLock { $0.closing } }

    private static let threadKey = "FlywheelStore.WriterCore"

    /// Called once by the writer thread so `isOnWriterThread` can recognise it.
    func markCurrentThreadAsWriter() {
        Thread.current.threadDictionary[Self.threadKey] = ObjectIdentifier(self).hashValue
    }

    /// True on this core's writer thread (e.g. inside a feedback completion), where waiting for the
    /// writer would deadlock.
    var isOnWriterThread: Bool {
        (Thread.current.threadDictionary[Self.threadKey] as? Int) == ObjectIdentifier(self).hashValue
    }

    func recordWriteErrors(_ count: Int, last: StoreError?) {
        guard count > 0 else { return }
        writeErrors.wrappingAdd(count, ordering: .relaxed)
        if let last { lastError.withLock { $0 = last } }
    }
}
