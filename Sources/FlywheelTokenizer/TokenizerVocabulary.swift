/// Everything a GGUF file says about its tokenizer, as plain values, validated.
///
/// Keys (all under `tokenizer.ggml.`): `model`, `pre`, `tokens`, `scores`, `token_type`, `merges`,
/// `bos_token_id`, `eos_token_id`, `eot_token_id`, `eom_token_id`, `unknown_token_id`,
/// `padding_token_id`, `add_bos_token`, `add_eos_token`, `add_space_prefix`. Optional values are `nil`
/// when the file does not carry the key; `Tokenizer` applies llama.cpp's defaults for those.
public struct TokenizerVocabulary: Sendable {
    /// The algorithm (`tokenizer.ggml.model`).
    public let model: TokenizerModelKind
    /// The pre-tokenizer name (`tokenizer.ggml.pre`, byte-level BPE only), e.g. "llama-bpe", "qwen2".
    public let preTokenizerName: String?
    /// Token texts by id. Byte-level BPE texts use the GPT-2 byte alphabet ("Ġthe"); SentencePiece
    /// texts use U+2581 for spaces ("▁the") and `<0xAB>` for byte tokens.
    public let tokens: [String]
    /// SentencePiece merge priorities by id (higher merges first); empty when absent.
    public let scores: [Float]
    /// Token kinds by id; all `.normal` when the file has no `token_type`.
    public let tokenTypes: [TokenType]
    /// Byte-level BPE merges in rank order, each "left right"; empty for SentencePiece.
    public let merges: [String]
    /// Beginning of sequence (`bos_token_id`).
    public let bosID: Int32?
    /// End of sequence (`eos_token_id`).
    public let eosID: Int32?
    /// End of turn (`<|eot_id|>`, `<|im_end|>` ...).
    public let eotID: Int32?
    /// End of message (Llama 3.1 `<|eom_id|>`).
    public let eomID: Int32?
    /// The unknown token (`unknown_token_id`).
    public let unknownID: Int32?
    /// Padding (`padding_token_id`); unused by the tokenizer, kept for the engine.
    public let paddingID: Int32?
    /// `add_bos_token`: whether encoding with special tokens starts with BOS.
    public let addBOS: Bool?
    /// `add_eos_token`: whether encoding with special tokens ends with EOS.
    public let addEOS: Bool?
    /// `add_space_prefix` (SentencePiece): whether text gets a leading space before tokenizing.
    public let addSpacePrefix: Bool?

    /// Validates and stores a vocabulary. `model` is the `tokenizer.ggml.model` string; `tokenTypes`
    /// are the raw `token_type` numbers. Throws `TokenizerError` for an unknown model, arrays whose
    /// length differs from `tokens`, invalid token types, duplicate token texts, byte tokens not
    /// spelled `<0xAB>`, missing or malformed merges, merges naming tokens that do not exist, and
    /// special ids outside the vocabulary.
    public init(
        model: String,
        preTokenizerName: String? = nil,
        tokens: [String],
        scores: [Float]? = nil,
        tokenTypes: [Int32]? = nil,
        merges: [String]? = nil,
        bosID: Int? = nil,
        eosID: Int? = nil,
        eotID: Int? = nil,
        eomID: Int? = nil,
        unknownID: Int? = nil,
        paddingID: Int? = nil,
        addBOS: Bool? = nil,
        addEOS: Bool? = nil,
        addSpacePrefix: Bool? = nil
    ) throws {
        guard let kind = TokenizerModelKind(rawValue: model) else { throw TokenizerError.unknownModel(model) }
        guard !tokens.isEmpty else { throw TokenizerError.emptyVocabulary }
        let count = tokens.count

        if let scores, scores.count != count {
            throw TokenizerError.lengthMismatch(key: "tokenizer.ggml.scores", expected: count, actual: scores.count)
        }
        var types = [TokenType](repeating: .normal, count: count)
        if let tokenTypes {
            guard tokenTypes.count == count else {
                throw TokenizerError.lengthMismatch(
                    key: "tokenizer.ggml.token_type", expected: count, actual: tokenTypes.count)
            }
            for (id, raw) in tokenTypes.enumerated() {
                guard let type = TokenType(rawValue: raw) else { throw TokenizerError.invalidTokenType(id: id, value: raw) }
                types[id] = type
            }
        }

        var idByText: [String: Int] = [:]
        idByText.reserveCapacity(count)
        for (id, text) in tokens.enumerated() {
            if let first = idByText.updateValue(id, forKey: text) {
                throw TokenizerError.duplicateToken(text: text, firstID: first, secondID: id)
            }
            if types[id] == .byte, Self.byteValue(ofByteToken: text) == nil {
                throw TokenizerError.invalidByteToken(id: id, text: text)
            }
        }

        if kind == .gpt2 {
            guard let merges else { throw TokenizerError.missingMerges }
            for (index, merge) in merges.enumerated() {
                guard let (left, right) = Self.splitMerge(merge) else {
                    throw TokenizerError.malformedMerge(index: index, text: merge)
                }
                for part in [left, right, left + right] where idByText[part] == nil {
                    throw TokenizerError.mergeNamesMissingToken(index: index, merge: merge, token: part)
                }
            }
        }

        func checked(_ id: Int?, _ key: String) throws -> Int32? {
            guard let id else { return nil }
            guard id >= 0, id < count else {
                throw TokenizerError.specialTokenOutOfRange(key: key, id: id, vocabularySize: count)
            }
            return Int32(id)
        }

        self.model = kind
        self.preTokenizerName = preTokenizerName
        self.tokens = tokens
        self.scores = scores ?? []
        self.tokenTypes = types
        self.merges = kind == .gpt2 ? merges ?? [] : []
        self.bosID = try checked(bosID, "tokenizer.ggml.bos_token_id")
        self.eosID = try checked(eosID, "tokenizer.ggml.eos_token_id")
        // Converters sometimes write ids of tokens the vocabulary does not have for these (a padding
        // id from the training config, say); llama.cpp ignores them and so do we. BOS and EOS stay
        // strict: a wrong one would corrupt every prompt or never end a generation.
        func lenient(_ id: Int?) -> Int32? { id.flatMap { $0 >= 0 && $0 < count ? Int32($0) : nil } }
        self.eotID = lenient(eotID)
        self.eomID = lenient(eomID)
        self.unknownID = lenient(unknownID)
        self.paddingID = lenient(paddingID)
        self.addBOS = addBOS
        self.addEOS = addEOS
        self.addSpacePrefix = addSpacePrefix
    }

    /// Splits "left right" at the first space after the first character, as llama.cpp does
    /// (so a left part that is itself a space stays intact).
    static func splitMerge(_ merge: String) -> (String, String)? {
        let bytes = Array(merge.utf8)
        guard bytes.count >= 3, let space = bytes[1...].firstIndex(of: 0x20) else { return nil }
        let left = String(decoding: bytes[..<space], as: UTF8.self)
        let right = String(decoding: bytes[(space + 1)...], as: UTF8.self)
        guard !right.isEmpty else { return nil }
        return (left, right)
    }

    /// The byte of a `<0xAB>` token text, or `nil` if the text is not of that form.
    static func byteValue(ofByteToken text: String) -> UInt8? {
        let bytes = Array(text.utf8)
        guard bytes.count == 6, bytes[0] == UInt8(ascii: "<"), bytes[1] == UInt8(ascii: "0"),
              bytes[2] == UInt8(ascii: "x"), bytes[5] == UInt8(ascii: ">") else { return nil }
        guard let high = hexDigit(bytes[3]), let low = hexDigit(bytes[4]) else { return nil }
        return high << 4 | low
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0") ... UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A") ... UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a") ... UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
