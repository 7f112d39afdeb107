/// What kind of feedback a row carries. Stored as its raw value.
public enum FeedbackSignal: String, Sendable, CaseIterable {
    case accepted, rejected, edited, score, comment
}
