/// SentencePiece BPE as llama.cpp runs it for `tokenizer.ggml.model == "llama"`: start from one symbol
/// per character, repeatedly merge the adjacent pair whose concatenation is a token with the highest
/// score (leftmost first on ties), then emit each symbol's token, or its bytes as `<0xAB>` tokens
/// when the vocabulary has no token for it.
struct ScoredPairMerger: Sendable {
    let table: TokenTextTable
    /// Scores by id; tokens that may not be formed by merging (control, byte, unknown) have no entry.
    let mergeScores: [Float?]
    /// The `<0xAB>` token for each byte, or -1.
    let byteTokens: [Int32]
    let unknownID: Int32?

    init(table: TokenTextTable, mergeScores: [Float?], byteTokens: [Int32], unknownID: Int32?) {
        self.table = table
        self.mergeScores = mergeScores
        self.byteTokens = byteTokens
        self.unknownID = unknownID
    }

    /// The merger for a SentencePiece vocabulary: normal, user-defined and unused tokens may be formed
    /// by merging (with their scores); byte tokens serve as the fallback.
    init(vocabulary: TokenizerVocabulary, types: [TokenType], table: TokenTextTable, unknownID: Int32?) {
        let count = vocabulary.tokens.count
        var byteTokens = [Int32](repeating: -1, count: 256)
        var mergeScores = [Float?](repeating: nil, count: count)
        for id in 0 ..< count {
            switch types[id] {
            case .byte:
                if let byte = TokenizerVocabulary.byteValue(ofByteToken: vocabulary.tokens[id]), byteTokens[Int(byte)] < 0 {
                    byteTokens[Int(byte)] = Int32(id)
                }
            case .normal, .userDefined, .unused:
                mergeScores[id] = id < vocabulary.scores.count ? vocabulary.scores[id] : 0
            case .control, .unknown:
                break
            }
        }
        // llama.cpp falls back to a token spelling the raw single byte when no <0xAB> token exists.
        for byte in 0 ..< 128 where byteTokens[byte] < 0 {
            byteTokens[byte] = table.id(of: String(UnicodeScalar(UInt8(byte)))) ?? -1
        }
        self.init(table: table, mergeScores: mergeScores, byteTokens: byteTokens, unknownID: unknownID)
    }

    private struct Candidate: Comparable {
        var score: Float
        var left: Int32
        var right: Int32
        var size: Int32

        // Min-heap order: highest score first, then leftmost.
        static func < (a: Candidate, b: Candidate) -> Bool {
            a.score > b.score || (a.score == b.score && a.left < b.left)
        }
    }

    /// Appends the tokens of `text` (already space-escaped UTF-8) to `output`.
    func encode(_ text: [UInt8], into output: inout [Int32]) {
        // Symbols are byte ranges of `text`: start[i] ..< start[i] + length[i]; length 0 = merged away.
        var start: [Int32] = []
        var length: [Int32] = []
        start.reserveCapacity(text.count)
        length.reserveCapacity(text.count)
        var offset = 0
        while offset < text.count {
            let width = min(Self.utf8Width(text[offset]), text.count - offset)
            start.append(Int32(offset))
            length.append(Int32(width))
            offset += width
        }
        let n = start.count
        guard n > 0 else { return }
        var next = (0 ..< n).map { Int32($0 + 1) }
        next[n - 1] = -1
        var prev = (0 ..< n).map { Int32($0 - 1) }
        var queue = BinaryHeap<Candidate>()

        func consider(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let from = Int(start[Int(left)])
            let size = length[Int(left)] + length[Int(right)]
            guard let id = table.id(of: text, from ..< from + Int(size)), let score = mergeScores[Int(id)] else { return }
            queue.push(Candidate(score: score, left: left, right: right, size: size))
        }

        for i in 0 ..< n - 1 { consider(Int32(i), Int32(i + 1)) }

        while let top = queue.popMin() {
            let left = Int(top.left), right = Int(top.right)
            // Symbols only grow or vanish, so unchanged sizes mean the pair is still the one queued.
            guard length[left] > 0, length[right] > 0, length[left] + length[right] == top.size else { continue }
            length[left] = top.size
            length[right] = 0
            let after = next[right]
            next[left] = after
            if after >= 0 { prev[Int(after)] = top.left }
            consider(prev[left], top.left)
            consider(top.left, after)
        }

        var i: Int32 = 0
        while i >= 0 {
            let from = Int(start[Int(i)]), to = from + Int(length[Int(i)])
            if let id = table.id(of: text, from ..< to) {
                output.append(id)
            } else {
                for byte in text[from ..< to] {
                    let token = byteTokens[Int(byte)]
                    if token >= 0 {
                        output.append(token)
                    } else if let unknownID {
                        output.append(unknownID)
                    }
                }
            }
            i = next[Int(i)]
        }
    }

    /// Bytes in the UTF-8 sequence that starts with `lead` (1 for stray continuation or invalid bytes).
    static func utf8Width(_ lead: UInt8) -> Int {
        switch lead {
        case 0xF0 ... 0xF7: return 4
        case 0xE0 ... 0xEF: return 3
        case 0xC0 ... 0xDF: return 2
        default: return 1
        }
    }
}
