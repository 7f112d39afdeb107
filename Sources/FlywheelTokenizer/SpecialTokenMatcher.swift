/// Finds special-token texts inside input text, so that `<|im_start|>` becomes one id instead of being
/// tokenized as characters.
///
/// Candidates are control, user-defined and unknown tokens. User-defined tokens are always matched;
/// control and unknown tokens only when parsing special tokens (llama.cpp's `parse_special`). At each
/// position the longest candidate wins, scanning left to right (Hugging Face's added-token matching).
struct SpecialTokenMatcher: Sendable {
    /// One piece of the input: plain text (a byte range) or a matched token.
    enum Fragment: Equatable {
        case text(Range<Int>)
        case token(Int32)
    }

    private struct Candidate {
        var id: Int32
        var bytes: [UInt8]
        var alwaysMatched: Bool
    }

    /// Candidates by first byte, longest first.
    private let byFirstByte: [[Candidate]]
    private let hasAlwaysMatched: Bool
    private let isEmpty: Bool

    init(tokens: [String], types: [TokenType]) {
        var groups = [[Candidate]](repeating: [], count: 256)
        var hasAlwaysMatched = false
        var isEmpty = true
        for (id, type) in types.enumerated() where type == .control || type == .userDefined || type == .unknown {
            let bytes = Array(tokens[id].utf8)
            guard let first = bytes.first else { continue }
            groups[Int(first)].append(Candidate(id: Int32(id), bytes: bytes, alwaysMatched: type == .userDefined))
            hasAlwaysMatched = hasAlwaysMatched || type == .userDefined
            isEmpty = false
        }
        self.byFirstByte = groups.map { $0.sorted { $0.bytes.count > $1.bytes.count } }
        self.hasAlwaysMatched = hasAlwaysMatched
        self.isEmpty = isEmpty
    }

    /// Cuts `text` into text fragments and matched tokens, in order. Empty text gives no fragments.
    func fragments(of text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !text.isEmpty else { return [] }
        guard !isEmpty, parseSpecial || hasAlwaysMatched else { return [.text(0 ..< text.count)] }
        var result: [Fragment] = []
        var textStart = 0
        var i = 0
        while i < text.count {
            var matched: Candidate?
            for candidate in byFirstByte[Int(text[i])] where parseSpecial || candidate.alwaysMatched {
                let n = candidate.bytes.count
                if i + n <= text.count, text[i ..< i + n].elementsEqual(candidate.bytes) {
                    matched = candidate
                    break
                }
            }
            if let matched {
                if textStart < i { result.append(.text(textStart ..< i)) }
                result.append(.token(matched.id))
                i += matched.bytes.count
                textStart = i
            } else {
                i += 1
            }
        }
        if textStart < text.count { result.append(.text(textStart ..< text.count)) }
        return result
    }
}
