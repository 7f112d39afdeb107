import FlywheelTokenizer
import Foundation

/// The tokenizers over arbitrary text, with small vocabularies built here: byte-level BPE (a complete GPT-2
/// byte alphabet, a few merges, control and user-defined tokens) under each pre-tokenizer, SentencePiece
/// (byte fallback, scored pieces) with and without the space prefix, and vocabularies made from the input
/// itself (which exercise the validation). Input: one configuration byte, then the text (or vocabulary).
/// Invariants:
/// - every id is inside the vocabulary; encoding the same text twice gives the same ids (the word cache);
/// - `decode(encode(x)) == x` for byte-level BPE, with or without special-token parsing; for SentencePiece
///   with "▁" read as a space (the vocabulary's own spelling of one) when no special token adds a prefix;
/// - the streaming decoder's pieces, concatenated, equal `decode` of the same ids with the same flags, for
///   any id sequence (out-of-range ids, split UTF-8 sequences, special tokens);
/// - `addSpecial` puts BOS first when the vocabulary adds it.
enum TokenizerHarness {
    static let controlTokens = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>"]
    static let userTokens = ["<|tool|>", "@@"]
    /// Words whose merges the byte-level vocabulary has (spelled in the byte alphabet when it is built).
    static let words = ["the", " the", " a", "and", "ing", "er", "  ", "\n\n", "12", "000", "é", "你", "'s", " <", "|>"]
    static let bytePairNames = ["gpt-2", "llama-bpe", "qwen2", "smollm", "tekken"]
    static let bytePair: [Tokenizer] = bytePairNames.map(makeBytePair)
    static let sentencePiece: [Tokenizer] = [makeSentencePiece(spacePrefix: true), makeSentencePiece(spacePrefix: false)]

    static func run(_ data: [UInt8]) {
        var config = FuzzBytes(data)
        let byte = config.byte()
        let parseSpecial = byte & 0x08 != 0
        let skipSpecial = byte & 0x10 != 0
        let asContinuation = byte & 0x20 != 0
        let rest = Array(config.rest)
        let tokenizer: Tokenizer
        switch Int(byte & 7) {
        case 0...4:
            tokenizer = bytePair[Int(byte & 7)]
        case 5, 6:
            tokenizer = sentencePiece[Int(byte & 7) - 5]
        default:
            fuzzVocabulary(rest, parseSpecial: parseSpecial)
            return
        }
        let text = String(decoding: rest, as: UTF8.self)
        let ids = encodeChecked(tokenizer, text, parseSpecial: parseSpecial)

        let decoded = tokenizer.decode(ids, asContinuation: false)
        if tokenizer.model == .gpt2 {
            check(decoded == text, "BPE decode(encode(x)) != x: \(text.debugDescription) -> \(decoded.debugDescription)")
        } else if !parseSpecial || !tokenizer.addsSpacePrefix {
            // llama.cpp's rule: with the space prefix, text after a matched token (here the user-defined "<|tool|>",
            // matched even without parseSpecial) gets a prefix space of its own.
            var expected = text.replacingLowerOneEighthBlocks()
            if tokenizer.addsSpacePrefix {
                let pieces = expected.components(separatedBy: "<|tool|>")
                expected = pieces.dropFirst().reduce(pieces[0]) { $0 + "<|tool|>" + ($1.isEmpty ? "" : " " + $1) }
            }
            check(decoded == expected, "SentencePiece decode(encode(x)) != x: \(text.debugDescription) -> \(decoded.debugDescription)")
        }

        checkStream(tokenizer, ids, skipSpecial: skipSpecial, asContinuation: asContinuation)
        // Arbitrary ids, two bytes each: out of range, control tokens, bytes that split a character.
        var arbitrary: [Int32] = []
        var index = 0
        while index + 1 < rest.count {
            arbitrary.append(Int32(Int16(bitPattern: UInt16(rest[index]) << 8 | UInt16(rest[index + 1]))) % Int32(tokenizer.vocabularySize + 8))
            index += 2
        }
        checkStream(tokenizer, arbitrary, skipSpecial: skipSpecial, asContinuation: asContinuation)
    }

    /// Encodes twice (the second time through the word cache) and checks the ids.
    static func encodeChecked(_ tokenizer: Tokenizer, _ text: String, parseSpecial: Bool) -> [Int32] {
        let ids = tokenizer.encode(text, addSpecial: false, parseSpecial: parseSpecial)
        check(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "an id outside the vocabulary")
        check(tokenizer.encode(text, addSpecial: false, parseSpecial: parseSpecial) == ids, "encoding again differs")
        let withSpecial = tokenizer.encode(text, addSpecial: true, parseSpecial: parseSpecial)
        if tokenizer.addsBOS, let bos = tokenizer.bosID { check(withSpecial.first == bos, "BOS missing") }
        if tokenizer.addsEOS, let eos = tokenizer.eosID { check(withSpecial.last == eos, "EOS missing") }
        return ids
    }

    static func checkStream(_ tokenizer: Tokenizer, _ ids: [Int32], skipSpecial: Bool, asContinuation: Bool) {
        var decoder = TokenStreamDecoder(tokenizer: tokenizer, skipSpecial: skipSpecial, asContinuation: asContinuation)
        var streamed = ""
        for id in ids { streamed += decoder.append(id) }
        streamed += decoder.finish()
        let whole = tokenizer.decode(ids, skipSpecial: skipSpecial, asContinuation: asContinuation)
        check(streamed == whole, "streamed \(streamed.debugDescription) != decoded \(whole.debugDescription)")
        check(decoder.finish().isEmpty, "finish left text behind")
    }

    /// A vocabulary from the input: NUL-separated fields (model, tokens by line, merges by line, token types,
    /// special ids, text). Building may fail, with a `TokenizerError`; if it succeeds, it must work.
    static func fuzzVocabulary(_ bytes: [UInt8], parseSpecial: Bool) {
        let fields = bytes.split(separator: 0, maxSplits: 5, omittingEmptySubsequences: false).map(Array.init)
        func field(_ i: Int) -> [UInt8] { i < fields.count ? fields[i] : [] }
        func lines(_ i: Int) -> [String] {
            field(i).split(separator: 0x0A, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        }
        let model = (field(0).first ?? 0) & 1 == 0 ? "gpt2" : "llama"
        let tokens = lines(1)
        let types = field(3).isEmpty ? nil : field(3).prefix(tokens.count).map { Int32($0 % 8) }
        let special = field(4).map { Int($0) - 2 }
        func specialID(_ i: Int) -> Int? { i < special.count ? special[i] : nil }
        do {
            let vocabulary = try TokenizerVocabulary(
                model: model, preTokenizerName: bytePairNames[tokens.count % bytePairNames.count], tokens: tokens,
                scores: tokens.indices.map { Float($0 % 7) }, tokenTypes: types, merges: lines(2),
                bosID: specialID(0), eosID: specialID(1), eotID: specialID(2), eomID: specialID(3),
                unknownID: specialID(4), paddingID: specialID(5), addBOS: special.count > 6 ? special[6] & 1 == 0 : nil)
            let tokenizer = Tokenizer(vocabulary)
            let text = String(decoding: field(5), as: UTF8.self)
            let ids = encodeChecked(tokenizer, text, parseSpecial: parseSpecial)
            checkStream(tokenizer, ids, skipSpecial: false, asContinuation: false)
            checkStream(tokenizer, ids + [0, -1, Int32(tokenizer.vocabularySize)], skipSpecial: true, asContinuation: true)
        } catch {
            check(error is TokenizerError, "untyped error \(error)")
        }
    }

    // MARK: Vocabularies

    /// GPT-2's printable stand-in for each byte: printable Latin-1 bytes stand for themselves, the rest
    /// (controls, space, 0x7F-0xA0, 0xAD) take U+0100 onwards in byte order.
    static let byteAlphabet: [String] = {
        var alphabet = [String](repeating: "", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte)
            let scalar = printable ? UInt32(byte) : next
            if !printable { next += 1 }
            alphabet[byte] = String(Unicode.Scalar(scalar)!)
        }
        return alphabet
    }()

    static func makeBytePair(pre: String) -> Tokenizer {
        var tokens = byteAlphabet
        var merges: [String] = []
        for word in words {
            let characters = word.utf8.map { byteAlphabet[Int($0)] }
            var left = characters[0]
            for right in characters.dropFirst() {
                if !tokens.contains(left + right) { tokens.append(left + right) }
                if !merges.contains("\(left) \(right)") { merges.append("\(left) \(right)") }
                left += right
            }
        }
        var types = [Int32](repeating: 1, count: tokens.count)
        for text in controlTokens { tokens.append(text); types.append(3) }
        for text in userTokens { tokens.append(text); types.append(4) }
        do {
            let vocabulary = try TokenizerVocabulary(
                model: "gpt2", preTokenizerName: pre, tokens: tokens, tokenTypes: types, merges: merges,
                bosID: tokens.firstIndex(of: "<|endoftext|>"), eosID: tokens.firstIndex(of: "<|im_end|>"))
            return Tokenizer(vocabulary)
        } catch {
            fatalError("the harness's byte-level vocabulary is invalid: \(error)")
        }
    }

    static func makeSentencePiece(spacePrefix: Bool) -> Tokenizer {
        var tokens = ["<unk>", "<s>", "</s>"]
        var types: [Int32] = [2, 3, 3]
        for byte in 0..<256 {
            let hex = String(byte, radix: 16, uppercase: true)
            tokens.append("<0x\(hex.count == 1 ? "0" + hex : hex)>")
            types.append(6)
        }
        for text in ["<|im_start|>", "<|im_end|>"] { tokens.append(text); types.append(3) }
        tokens.append("<|tool|>")
        types.append(4)
        let pieces = ["▁", "t", "h", "e", "a", "n", "d", "▁t", "he", "▁the", "▁a", "an", "nd", "▁and", "é", "ü", "你",
                      "1", "2", "▁▁", "\n", ".", ","]
        for piece in pieces { tokens.append(piece); types.append(1) }
        // Longer pieces score higher, so they merge first.
        let scores = tokens.map { Float($0.unicodeScalars.count) }
        do {
            let vocabulary = try TokenizerVocabulary(
                model: "llama", tokens: tokens, scores: scores, tokenTypes: types, addSpacePrefix: spacePrefix)
            return Tokenizer(vocabulary)
        } catch {
            fatalError("the harness's SentencePiece vocabulary is invalid: \(error)")
        }
    }
}

extension String {
    /// U+2581 (SentencePiece's spelling of a space) replaced by a space, scalar by scalar.
    func replacingLowerOneEighthBlocks() -> String {
        var scalars = String.UnicodeScalarView()
        for scalar in unicodeScalars { scalars.append(scalar == "\u{2581}" ? " " : scalar) }
        return String(scalars)
    }
}
