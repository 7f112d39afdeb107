import FlywheelStore
import Synchronization

/// Thread-safe holder for a feedback result.
final class ResultBox: Sendable {
    private let value = Mutex<Result<FeedbackSubmission, StoreError>?>(nil)
    func set(_ result: Result<FeedbackSubmission, StoreError>) { value.withLock { $0 = result } }
    func get() -> Result<FeedbackSubmission, StoreError>? { value.withLock { $0 } }
}
