/// The outcome of a successful feedback submit.
public struct FeedbackSubmission: Sendable, Equatable {
    /// The row id of the feedback (the original row's id when `duplicate`).
    public var feedbackID: Int64
    /// True when the same feedback was already stored under this idempotency key; nothing was inserted.
    public var duplicate: Bool
    /// Rows the feedback is stored as: 1, or for episode feedback one per request of the episode.
    public var rows: Int = 1

    public init(feedbackID: Int64, duplicate: Bool) {
        self.feedbackID = feedbackID
        self.duplicate = duplicate
    }
}
