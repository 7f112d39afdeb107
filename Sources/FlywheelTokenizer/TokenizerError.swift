/// Why a vocabulary could not be turned into a tokenizer. Each case names the key or token at fault.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// `tokenizer.ggml.model` is not one this tokenizer implements ("gpt2" and "llama").
    case unknownModel(String)
    /// `tokenizer.ggml.tokens` is empty.
    case emptyVocabulary
    /// A per-token array (`scores`, `token_type`) does not have one entry per token.
    case lengthMismatch(key: String, expected: Int, actual: Int)
    /// A `token_type` value outside 1...6.
    case invalidTokenType(id: Int, value: Int32)
    /// Two tokens have the same text.
    case duplicateToken(text: String, firstID: Int, secondID: Int)
    /// A byte-level BPE vocabulary without `tokenizer.ggml.merges`.
    case missingMerges
    /// A merge that is not two token texts separated by a space.
    case malformedMerge(index: Int, text: String)
    /// A merge whose left part, right part or result is not in the vocabulary.
    case mergeNamesMissingToken(index: Int, merge: String, token: String)
    /// A special token id (`bos_token_id` ...) that is not a valid token id.
    case specialTokenOutOfRange(key: String, id: Int, vocabularySize: Int)
    /// A token of type byte whose text is not `<0xAB>`.
    case invalidByteToken(id: Int, text: String)
    /// A required metadata key is absent (when reading a model file).
    case missingMetadata(key: String)
    /// A metadata key has the wrong type or an unusable value (when reading a model file).
    case invalidMetadata(key: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownModel(name):
            return "tokenizer: unknown tokenizer.ggml.model \"\(name)\" (supported: gpt2, llama)"
        case .emptyVocabulary:
            return "tokenizer: tokenizer.ggml.tokens is empty"
        case let .lengthMismatch(key, expected, actual):
            return "tokenizer: \(key) has \(actual) entries, expected one per token (\(expected))"
        case let .invalidTokenType(id, value):
            return "tokenizer: token \(id) has invalid token_type \(value) (allowed 1...6)"
        case let .duplicateToken(text, firstID, secondID):
            return "tokenizer: tokens \(firstID) and \(secondID) have the same text \"\(text)\""
        case .missingMerges:
            return "tokenizer: gpt2 vocabulary without tokenizer.ggml.merges"
        case let .malformedMerge(index, text):
            return "tokenizer: merge \(index) \"\(text)\" is not two tokens separated by a space"
        case let .mergeNamesMissingToken(index, merge, token):
            return "tokenizer: merge \(index) \"\(merge)\" names \"\(token)\", which is not in the vocabulary"
        case let .specialTokenOutOfRange(key, id, vocabularySize):
            return "tokenizer: \(key) \(id) is outside the vocabulary (0..<\(vocabularySize))"
        case let .invalidByteToken(id, text):
            return "tokenizer: byte token \(id) has text \"\(text)\", expected <0xAB>"
        case let .missingMetadata(key):
            return "tokenizer: model file has no \(key)"
        case let .invalidMetadata(key, reason):
            return "tokenizer: model file key \(key): \(reason)"
        }
    }
}
