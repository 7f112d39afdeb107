import Dispatch
import FlywheelStore
import Synchronization

/// The gateway's log as tests see it: every call goes on to the real SQLite writer, and each request row
/// handed over is counted by id (`events`: "enqueued:<id>" and "enqueued"), so a test can wait for a row
/// that the gateway writes after the client saw its answer (a disconnect, say) and then read it back from
/// the file. Thread-safe.
public final class ObservedLog: LogSink {
    public let writer: SQLiteLogWriter
    public let events = EventCounts()
    private let enqueued = Mutex<[RequestRecord]>([])

    public init(writer: SQLiteLogWriter) {
        self.writer = writer
    }

    /// Every request row handed to the writer so far, in order.
    public var records: [RequestRecord] { enqueued.withLock { $0 } }

    /// Blocks until a row for request `id` was handed to the writer, then until it is committed. False when
    /// none came (within `timeout`, which only keeps a broken test from hanging).
    public func waitUntilStored(_ id: String, timeout: Double = 10) -> Bool {
        guard events.wait("enqueued:" + id, atLeast: 1, timeout: timeout) >= 1 else { return false }
        writer.flush()
        return true
    }

    /// Blocks until `count` rows in all were handed to the writer, then until they are committed.
    public func waitUntilStored(count: Int, timeout: Double = 30) -> Bool {
        guard events.wait("enqueued", atLeast: count, timeout: timeout) >= count else { return false }
        writer.flush()
        return true
    }

    // MARK: LogSink

    public func enqueue(_ record: RequestRecord) -> Bool {
        let accepted = writer.enqueue(record)
        if accepted {
            enqueued.withLock { $0.append(record) }
            events.add("enqueued:" + record.id)
            events.add("enqueued")
        }
        return accepted
    }

    public func submitFeedback(_ feedback: FeedbackRecord, deadline: DispatchTime?,
                               completion: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> Void) {
        writer.submitFeedback(feedback, deadline: deadline, completion: completion)
    }

    public func flush() { writer.flush() }
    public func close() { writer.close() }
    public var queueDepth: Int { writer.queueDepth }
    public var droppedCount: Int { writer.droppedCount }
    public var writtenCount: Int { writer.writtenCount }
    public var writeErrorCount: Int { writer.writeErrorCount }
    public var lastWriteError: StoreError? { writer.lastWriteError }
    public var health: LogHealth { writer.health }
    public func setMaxSize(bytes: Int64?) { writer.setMaxSize(bytes: bytes) }
}
