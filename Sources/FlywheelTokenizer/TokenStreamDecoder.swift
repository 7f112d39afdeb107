/// Turns generated token ids into text one id at a time, for streaming.
///
/// A character can span several tokens (SentencePiece byte tokens, byte-level BPE pieces that split a
/// UTF-8 sequence), so each `append` returns only the text that is complete and holds back a trailing
/// incomplete UTF-8 sequence. The concatenation of every `append` and the final `finish()` equals
/// `tokenizer.decode(allIDs, skipSpecial:, asContinuation:)` with the same flags.
///
/// A value type owned by one generation; not meant to be shared between threads while in use.
public struct TokenStreamDecoder: Sendable {
    /// The tokenizer whose pieces are decoded.
    public let tokenizer: Tokenizer
    /// Leave out control and unknown tokens.
    public let skipSpecial: Bool
    private var pending: [UInt8] = []
    private var stripsLeadingSpace: Bool

    /// A decoder for ids that continue earlier text (`asContinuation: true`, the usual case for
    /// generated tokens) or that start a text (`false`: SentencePiece's prefix space is dropped).
    public init(tokenizer: Tokenizer, skipSpecial: Bool = false, asContinuation: Bool = false) {
        self.tokenizer = tokenizer
        self.skipSpecial = skipSpecial
        self.stripsLeadingSpace = tokenizer.addsSpacePrefix && !asContinuation
    }

    /// Adds one token; returns the text completed by it (possibly empty).
    public mutating func append(_ id: Int32) -> String {
        tokenizer.appendPiece(of: id, skipSpecial: skipSpecial, stripsLeadingSpace: &stripsLeadingSpace, to: &pending)
        let complete = pending.count - Self.incompleteSuffixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Returns whatever is still held back (an unfinished sequence decodes as U+FFFD) and resets.
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the trailing bytes that begin a valid UTF-8 sequence but do not finish it.
    ///
    /// Only a prefix that more bytes could still complete is held back; a decoder reading the whole
    /// stream would cut at the same place, so decoding chunk by chunk gives the same text (including
    /// where U+FFFD replacements fall).
    static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        let n = bytes.count
        var lead = n - 1
        while lead >= 0, lead >= n - 3, bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
        guard lead >= 0 else { return 0 }
        let width: Int
        switch bytes[lead] {
        case 0xC2 ... 0xDF: width = 2
        case 0xE0 ... 0xEF: width = 3
        case 0xF0 ... 0xF4: width = 4
        default: return 0
        }
        let have = n - lead
        guard have < width else { return 0 }
        if have >= 2 {
            let second = bytes[lead + 1]
            let allowed: ClosedRange<UInt8>
            switch bytes[lead] {
            case 0xE0: allowed = 0xA0 ... 0xBF
            case 0xED: allowed = 0x80 ... 0x9F
            case 0xF0: allowed = 0x90 ... 0xBF
            case 0xF4: allowed = 0x80 ... 0x8F
            default: allowed = 0x80 ... 0xBF
            }
            guard allowed.contains(second) else { return 0 }
        }
        return have
    }
}
