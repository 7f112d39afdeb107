/// What the `InferenceScheduler` needs from a loaded model: sequences to evaluate tokens in, and
/// the tokenizer's view of generated ids. `LocalModel` is the real one; the seam keeps the
/// scheduler's queueing, fairness and cancellation independent of the transformer.
public protocol GenerationModel: AnyObject, Sendable {
    /// The name requests use for this model.
    var name: String { get }
    /// Tokens a sequence may hold (prompt plus generated).
    var contextLength: Int { get }
    /// A fresh, empty sequence with room for `capacity` tokens.
    func makeSequence(capacity: Int) throws -> any TokenSequence
    /// Whether `token` ends a generation (EOS, end of turn ...).
    func isEndOfGeneration(_ token: Int32) -> Bool
    /// A decoder that turns generated ids into text, one id at a time.
    func makeTextStream() -> any TokenTextStream
    /// Bytes of KV cache a sequence holds per token (0 when not known: no cache budget applies).
    var cacheBytesPerToken: Int { get }
    /// Evaluates one step of several of this model's sequences together (continuous batching): appends each
    /// entry's tokens to its sequence and returns the logits predicting each one's next token, in entry order
    /// (each buffer belongs to its sequence, valid until that sequence's next evaluation). A sequence appears at
    /// most once. On a throw, the step failed for every entry. The default appends one entry at a time.
    func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
        -> [UnsafeMutableBufferPointer<Float>]
}

extension GenerationModel {
    public var cacheBytesPerToken: Int { 0 }

    public func appendBatch(_ entries: [(sequence: any TokenSequence, tokens: ArraySlice<Int32>)]) throws
        -> [UnsafeMutableBufferPointer<Float>] {
        try entries.map { try $0.sequence.append($0.tokens) }
    }
}

/// One sequence's evaluation state (its KV cache). Used by the scheduler thread only.
public protocol TokenSequence: AnyObject {
    /// The tokens whose keys and values are cached, in order.
    var tokens: [Int32] { get }
    /// The number of tokens the sequence can hold.
    var capacity: Int { get }
    /// Forgets everything after the first `count` tokens (keeps a shared prompt prefix).
    func truncate(to count: Int)
    /// Evaluates `tokens` after the cached ones and returns the logits predicting the next token.
    /// The buffer belongs to the sequence and is valid until the next call.
    func append(_ tokens: ArraySlice<Int32>) throws -> UnsafeMutableBufferPointer<Float>
    /// Replaces this sequence's contents with the first `count` tokens of `other` (a sequence of the same model
    /// holding a prompt prefix this one needs), copying their cached keys and values instead of evaluating them
    /// again. Returns false, changing nothing, when it cannot (the default).
    func adoptPrefix(of other: any TokenSequence, count: Int) -> Bool
    /// Allocates room for `count` tokens now, keeping the cached ones, so evaluating up to there needs no more
    /// memory (the scheduler reserves what a generation may use when it starts). The default does nothing.
    func reserve(_ count: Int)
    /// Bytes of cache memory the sequence holds now (0 when not known).
    var reservedBytes: Int { get }
}

extension TokenSequence {
    public func adoptPrefix(of other: any TokenSequence, count: Int) -> Bool { false }
    public func reserve(_ count: Int) {}
    public var reservedBytes: Int { 0 }
}

/// Incremental detokenization: `append` returns the text that became complete with `token`
/// (possibly empty while a multi-byte character is split over tokens); `finish` flushes the rest.
/// The pieces concatenate to the full decoded text.
public protocol TokenTextStream {
    mutating func append(_ token: Int32) -> String
    mutating func finish() -> String
}
