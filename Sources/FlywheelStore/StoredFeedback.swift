/// A feedback row with its row id (equal to `record.id`).
public struct StoredFeedback: Sendable {
    public var rowID: Int64
    public var record: FeedbackRecord

    public init(rowID: Int64, record: FeedbackRecord) {
        self.rowID = rowID
        self.record = record
    }
}
