import Dispatch
import Synchronization

/// One feedback submission on its way through the writer. Answers its caller exactly once: with the
/// outcome once the writer has committed it, or with `.deadlineExceeded` when its deadline comes first.
///
/// Sendable by construction: the record and the completion are immutable, and who may still answer is
/// decided by one atomic state change (waiting → writing → answered).
final class FeedbackTicket: Sendable {
    let record: FeedbackRecord
    private let completion: @Sendable (Result<FeedbackSubmission, StoreError>) -> Void
    private let state = Atomic<UInt8>(State.waiting)

    private enum State {
        static let waiting: UInt8 = 0
        static let writing: UInt8 = 1
        static let answered: UInt8 = 2
    }

    init(record: FeedbackRecord, completion: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> Void) {
        self.record = record
        self.completion = completion
    }

    /// The writer takes the ticket. False when its deadline already answered it: the caller was told it
    /// failed, so the feedback must not be written.
    func beginWriting() -> Bool {
        state.compareExchange(expected: State.waiting, desired: State.writing, ordering: .acquiringAndReleasing).exchanged
    }

    /// Calls the completion with `result` unless the ticket was already answered.
    func answer(_ result: Result<FeedbackSubmission, StoreError>) {
        if state.exchange(State.answered, ordering: .acquiringAndReleasing) != State.answered {
            completion(result)
        }
    }

    /// Answers `.deadlineExceeded` at `deadline` (on a Dispatch global queue) unless answered by then.
    func expire(at deadline: DispatchTime) {
        DispatchQueue.global().asyncAfter(deadline: deadline) { [self] in answer(.failure(.deadlineExceeded)) }
    }
}
