/// Feedback on one logged request. A plain value; submit it with `LogSink.submitFeedback(_:deadline:completion:)`.
public struct FeedbackRecord: Sendable, Equatable {
    /// Assigned by the store (0 before insert; ignored on submit).
    public var id: Int64
    /// The `RequestRecord.id` this is about. Must already be in the log (or enqueued before the submit).
    /// Ignored on submit when `episodeID` is set.
    public var requestID: String
    /// Feedback on a whole episode: on submit it is stored once for every request of the episode logged so
    /// far (each stored row names its request and this episode); the idempotency key goes on the first.
    public var episodeID: String?
    /// Unix milliseconds.
    public var createdAtMillis: Int64
    public var signal: FeedbackSignal
    public var value: Double?
    /// Corrected assistant answer.
    public var correction: String?
    public var comment: String?
    public var source: String?
    public var weight: Double?
    /// Resubmitting identical feedback with the same key returns the first row instead of adding one;
    /// different feedback under a used key is refused (`StoreError.idempotencyConflict`).
    /// "Identical" is `isSameSubmission(as:)`: everything but `id` and `createdAtMillis`.
    public var idempotencyKey: String?

    /// Everything not given is nil; `id` is 0.
    public init(requestID: String, createdAtMillis: Int64, signal: FeedbackSignal) {
        self.id = 0
        self.requestID = requestID
        self.createdAtMillis = createdAtMillis
        self.signal = signal
        self.value = nil
        self.correction = nil
        self.comment = nil
        self.source = nil
        self.weight = nil
        self.idempotencyKey = nil
        self.episodeID = nil
    }

    /// True when `other` says the same thing: every field but the store-assigned `id` and `createdAtMillis`
    /// (a retry is stamped later than the original) is equal.
    public func isSameSubmission(as other: FeedbackRecord) -> Bool {
        // Episode feedback is stored on the episode's first request: the episode, not the request, says what it is about.
        (episodeID != nil || other.episodeID != nil ? episodeID == other.episodeID : requestID == other.requestID)
            && signal == other.signal && value == other.value
            && correction == other.correction && comment == other.comment && source == other.source
            && weight == other.weight && idempotencyKey == other.idempotencyKey
    }
}
