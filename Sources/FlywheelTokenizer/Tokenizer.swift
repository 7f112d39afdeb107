import Synchronization

/// Text <-> token ids for one vocabulary: byte-level BPE (`gpt2`) or SentencePiece BPE (`llama`),
/// following llama.cpp's behaviour for GGUF models.
///
/// Immutable after `init` apart from an internal word cache behind a mutex, so one instance may be
/// shared by any number of threads.
///
/// Defaults for keys the file lacks, as llama.cpp applies them: SentencePiece adds BOS, no EOS and a
/// space prefix, with BOS 1, EOS 2 and unknown 0; byte-level BPE adds BOS only for the Llama-3 family
/// of pre-tokenizer names and Tekken. Byte-level BPE ignores `add_space_prefix`.
///
/// Not reproduced from llama.cpp: its "clean up spaces" pass when decoding (pieces are concatenated
/// as they are, so `decode(encode(s)) == s`), and the per-model whitespace stripping around special
/// tokens it applies to Phi-3 and Jina vocabularies by name.
public final class Tokenizer: Sendable {
    /// The vocabulary this tokenizer was built from.
    public let vocabulary: TokenizerVocabulary
    /// How byte-level BPE text is split into words (`.gpt2` for SentencePiece, where it is unused).
    public let preTokenizer: PreTokenizer
    /// Beginning of sequence: `bos_token_id`, or 1 for SentencePiece vocabularies without one.
    public let bosID: Int32?
    /// End of sequence: `eos_token_id`, or 2 for SentencePiece vocabularies without one.
    public let eosID: Int32?
    /// `unknown_token_id`, or 0 for SentencePiece vocabularies without one.
    public let unknownID: Int32?
    /// Whether `encode(_:addSpecial: true)` starts with BOS.
    public let addsBOS: Bool
    /// Whether `encode(_:addSpecial: true)` ends with EOS.
    public let addsEOS: Bool
    /// SentencePiece only: a space is put before text at the start and after each special token.
    public let addsSpacePrefix: Bool
    /// Byte-level BPE only: a word that is itself a token is not merged (Llama 3's `ignore_merges`).
    public let ignoresMerges: Bool
    /// Ids that end generation: EOS, EOT, EOM and tokens named like an end of turn (see `isEndOfGeneration`).
    public let endOfGenerationIDs: Set<Int32>

    /// Token kinds after llama.cpp's fix-up: end-of-turn-looking tokens count as control tokens.
    let types: [TokenType]
    let table: TokenTextTable
    let matcher: SpecialTokenMatcher
    /// The bytes each token decodes to: token i is `pieceBytes[pieceOffsets[i] ..< pieceOffsets[i + 1]]`.
    let pieceBytes: [UInt8]
    let pieceOffsets: [Int]
    /// Byte-level BPE: the merges, and the token of each byte's alphabet character (-1 if absent).
    let bytePairMerger: BytePairMerger?
    let byteSymbols: [Int32]
    /// SentencePiece: the scored merger.
    let scoredMerger: ScoredPairMerger?
    /// Byte-level BPE word (UTF-8) -> ids; cleared when it grows past `wordCacheLimit`.
    let wordCache = Mutex<[[UInt8]: [Int32]]>([:])
    static let wordCacheLimit = 50_000
    /// Longer words (runs of digits, base64 blobs) are merged every time rather than cached.
    static let longestCachedWord = 128

    /// Token texts llama.cpp treats as end of generation whatever the metadata says.
    public static let endOfGenerationTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
    ]

    /// Builds the lookup tables for `vocabulary`.
    public init(_ vocabulary: TokenizerVocabulary) {
        self.vocabulary = vocabulary
        let isSentencePiece = vocabulary.model == .llama
        let count = vocabulary.tokens.count
        func inRange(_ id: Int32) -> Int32? { id < count ? id : nil }

        preTokenizer = isSentencePiece ? .gpt2 : PreTokenizer(name: vocabulary.preTokenizerName)
        bosID = vocabulary.bosID ?? (isSentencePiece ? inRange(1) : nil)
        eosID = vocabulary.eosID ?? (isSentencePiece ? inRange(2) : nil)
        unknownID = vocabulary.unknownID ?? (isSentencePiece ? inRange(0) : nil)
        let llama3Family: Set<String> = ["llama3", "llama-v3", "llama-bpe", "falcon3", "tekken"]
        let isLlama3Family = !isSentencePiece && llama3Family.contains(vocabulary.preTokenizerName ?? "")
        addsBOS = vocabulary.addBOS ?? (isSentencePiece || isLlama3Family)
        addsEOS = vocabulary.addEOS ?? false
        addsSpacePrefix = isSentencePiece && (vocabulary.addSpacePrefix ?? true)
        ignoresMerges = isLlama3Family

        var types = vocabulary.tokenTypes
        var endOfGeneration = Set([eosID, vocabulary.eotID, vocabulary.eomID].compactMap { $0 })
        for (id, text) in vocabulary.tokens.enumerated() where Self.endOfGenerationTexts.contains(text) {
            endOfGeneration.insert(Int32(id))
            types[id] = .control
        }
        self.types = types
        endOfGenerationIDs = endOfGeneration

        let table = TokenTextTable(vocabulary.tokens)
        self.table = table
        matcher = SpecialTokenMatcher(tokens: vocabulary.tokens, types: types)

        (pieceBytes, pieceOffsets) = Self.decodedPieces(vocabulary.tokens, types, isSentencePiece: isSentencePiece)

        if isSentencePiece {
            scoredMerger = ScoredPairMerger(vocabulary: vocabulary, types: types, table: table, unknownID: unknownID)
            bytePairMerger = nil
            byteSymbols = []
        } else {
            scoredMerger = nil
            bytePairMerger = BytePairMerger(merges: vocabulary.merges, table: table)
            byteSymbols = ByteLevelAlphabet.scalarForByte.map { value in
                Unicode.Scalar(value).flatMap { table.id(of: String($0)) } ?? -1
            }
        }
    }

    /// The bytes every token decodes to, flattened: token i is `bytes[offsets[i] ..< offsets[i + 1]]`.
    /// Normal tokens are un-spelled (byte alphabet, or U+2581 to space), byte tokens give their byte,
    /// control, unknown and user-defined tokens their text, unused tokens nothing.
    private static func decodedPieces(
        _ tokens: [String], _ types: [TokenType], isSentencePiece: Bool
    ) -> (bytes: [UInt8], offsets: [Int]) {
        var bytes: [UInt8] = []
        var offsets = [0]
        offsets.reserveCapacity(tokens.count + 1)
        for (id, text) in tokens.enumerated() {
            switch types[id] {
            case .normal where isSentencePiece:
                for scalar in text.unicodeScalars {
                    if scalar == "\u{2581}" { bytes.append(0x20) } else { bytes.append(contentsOf: String(scalar).utf8) }
                }
            case .normal:
                bytes.append(contentsOf: ByteLevelAlphabet.decode(text))
            case .byte:
                // Validated: byte tokens are spelled <0xAB>.
                if let byte = TokenizerVocabulary.byteValue(ofByteToken: text) { bytes.append(byte) }
            case .control, .unknown, .userDefined:
                bytes.append(contentsOf: text.utf8)
            case .unused:
                break
            }
            offsets.append(bytes.count)
        }
        return (bytes, offsets)
    }

    /// Number of tokens in the vocabulary.
    public var vocabularySize: Int { vocabulary.tokens.count }

    /// The model kind (`gpt2` byte-level BPE or `llama` SentencePiece).
    public var model: TokenizerModelKind { vocabulary.model }

    /// The vocabulary text of token `id` as stored ("Ġthe", "▁the", "<0x0A>", "<|im_end|>"), or `nil`.
    public func tokenText(_ id: Int32) -> String? {
        id >= 0 && Int(id) < vocabularySize ? vocabulary.tokens[Int(id)] : nil
    }

    /// The kind of token `id` (end-of-turn-looking tokens count as `.control`), or `nil` if out of range.
    public func tokenType(_ id: Int32) -> TokenType? {
        id >= 0 && Int(id) < vocabularySize ? types[Int(id)] : nil
    }

    /// The id of the token whose vocabulary text is `text` (e.g. "<|im_end|>").
    public func tokenID(forText text: String) -> Int32? {
        table.id(of: text)
    }

    /// Whether generating `id` ends the answer: EOS, EOT, EOM, or a token named `<|eot_id|>`,
    /// `<|im_end|>`, `<|end|>`, `<end_of_turn>`, `<|endoftext|>`, `<|eom_id|>` or `<EOT>`
    /// (llama.cpp's rule; those tokens are treated as control tokens).
    public func isEndOfGeneration(_ id: Int32) -> Bool {
        endOfGenerationIDs.contains(id)
    }
}
