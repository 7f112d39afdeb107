import Dispatch

/// Work for the writer thread other than request rows, queued in submission order. `after` is the number
/// of requests enqueued before it was submitted: the writer handles it only once those have been taken
/// from the queue, so it lands in the same transaction as (or a later one than) every earlier request.
enum WriterControl: Sendable {
    /// Insert the ticket's feedback, then answer it (after commit, on the writer thread).
    case feedback(FeedbackTicket, after: UInt64)
    /// Signal the semaphore once everything submitted before it is committed (`flush()`).
    case barrier(after: UInt64, DispatchSemaphore)

    var after: UInt64 {
        switch self {
        case let .feedback(_, after): return after
        case let .barrier(after, _): return after
        }
    }

    var isFeedback: Bool {
        if case .feedback = self { return true }
        return false
    }
}
