/// A logged request with the feedback on it.
public struct RequestWithFeedback: Sendable, Equatable {
    /// The insert sequence number (as in `StoredRequest`).
    public var rowID: Int64
    public var record: RequestRecord
    /// Feedback on `record.id`, oldest first (empty when the query did not ask for it).
    public var feedback: [FeedbackRecord]

    public init(rowID: Int64, record: RequestRecord, feedback: [FeedbackRecord]) {
        self.rowID = rowID
        self.record = record
        self.feedback = feedback
    }
}
