/// What `InferenceContext` refuses to do. Nothing in the context changes when one of these is thrown.
public enum InferenceError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Evaluating `adding` more tokens at `position` would pass the context's `capacity`.
    case contextFull(position: Int, adding: Int, capacity: Int)
    /// A token id outside `0 ..< vocabularySize`.
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    /// `evaluate` was given no tokens.
    case noTokens
    /// The requested capacity cannot be used (not positive, or past the model's context length).
    case invalidCapacity(requested: Int, contextLength: Int)
    /// `truncate(to:)` was asked for a position outside `0 ... position`.
    case invalidTruncation(to: Int, position: Int)
    /// An `InferenceBatch` was given a context it cannot evaluate together with the others: of another model,
    /// longer than the batch's `maxPositions`, or listed twice.
    case notBatchable(String)

    public var description: String {
        switch self {
        case let .contextFull(position, adding, capacity):
            return "inference: context full: \(adding) token(s) at position \(position) exceed the capacity of \(capacity)"
        case let .tokenOutOfRange(token, vocabularySize):
            return "inference: token id \(token) is outside the vocabulary (0..<\(vocabularySize))"
        case .noTokens:
            return "inference: no tokens to evaluate"
        case let .invalidCapacity(requested, contextLength):
            return "inference: capacity \(requested) must be between 1 and the model's context length \(contextLength)"
        case let .invalidTruncation(to, position):
            return "inference: cannot truncate to \(to); the sequence holds \(position) position(s)"
        case let .notBatchable(reason):
            return "inference: cannot batch: \(reason)"
        }
    }
}
