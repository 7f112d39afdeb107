extension Tokenizer {
    /// The token ids of `text`.
    ///
    /// - Parameters:
    ///   - addSpecial: add BOS and/or EOS as the vocabulary asks (`addsBOS`, `addsEOS`).
    ///   - parseSpecial: match control-token texts such as `<|im_start|>` in `text` and emit their ids
    ///     (chat templates render them as text). User-defined tokens are always matched; without this
    ///     flag control-token texts are tokenized as ordinary characters.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = false) -> [Int32] {
        let bytes = Array(text.utf8)
        var output: [Int32] = []
        output.reserveCapacity(bytes.count / 3 + 2)
        if addSpecial, addsBOS, let bosID { output.append(bosID) }

        let fragments = matcher.fragments(of: bytes, parseSpecial: parseSpecial)
        if let scoredMerger {
            // llama.cpp: the space prefix goes before the first text and before text after a special token.
            var afterSpecial = true
            var escaped: [UInt8] = []
            for fragment in fragments {
                switch fragment {
                case let .token(id):
                    output.append(id)
                    afterSpecial = true
                case let .text(range):
                    escaped.removeAll(keepingCapacity: true)
                    if addsSpacePrefix, afterSpecial { escaped.append(contentsOf: [0xE2, 0x96, 0x81]) }
                    for byte in bytes[range] {
                        if byte == 0x20 { escaped.append(contentsOf: [0xE2, 0x96, 0x81]) } else { escaped.append(byte) }
                    }
                    scoredMerger.encode(escaped, into: &output)
                    afterSpecial = false
                }
            }
        } else {
            for fragment in fragments {
                switch fragment {
                case let .token(id): output.append(id)
                case let .text(range): encodeByteLevel(bytes, range, into: &output)
                }
            }
        }

        if addSpecial, addsEOS, let eosID { output.append(eosID) }
        return output
    }

    /// Byte-level BPE of one text fragment: pre-tokenize into words, then merge each word.
    private func encodeByteLevel(_ bytes: [UInt8], _ range: Range<Int>, into output: inout [Int32]) {
        // The fragment is valid UTF-8: it comes from a String and is cut only at special-token texts.
        var scalars: [Unicode.Scalar] = []
        var offsets: [Int] = []  // UTF-8 offset of each scalar, plus the end
        scalars.reserveCapacity(range.count)
        offsets.reserveCapacity(range.count + 1)
        var offset = range.lowerBound
        for scalar in String(decoding: bytes[range], as: UTF8.self).unicodeScalars {
            scalars.append(scalar)
            offsets.append(offset)
            offset += UTF8.width(scalar)
        }
        offsets.append(offset)

        var start = 0
        for end in preTokenizer.split(scalars) {
            encodeWord(bytes, offsets[start] ..< offsets[end], into: &output)
            start = end
        }
    }

    private func encodeWord(_ bytes: [UInt8], _ range: Range<Int>, into output: inout [Int32]) {
        guard let bytePairMerger, !range.isEmpty else { return }
        let word = Array(bytes[range])
        if let cached = wordCache.withLock({ $0[word] }) {
            output.append(contentsOf: cached)
            return
        }

        var symbols = word.map { byteSymbols[Int($0)] }
        var resolved = false
        if ignoresMerges, word.count > 1 {
            var spelled: [UInt8] = []
            ByteLevelAlphabet.encode(word, into: &spelled)
            if let id = table.id(of: spelled, 0 ..< spelled.count) {
                symbols = [id]
                resolved = true
            }
        }
        if !resolved { bytePairMerger.merge(&symbols) }

        var ids: [Int32] = []
        ids.reserveCapacity(symbols.count)
        for symbol in symbols {
            if symbol >= 0 {
                ids.append(symbol)
            } else if let unknownID {
                // A byte the vocabulary has no character for (never in a complete byte-level vocabulary).
                ids.append(unknownID)
            }
        }
        output.append(contentsOf: ids)
        guard word.count <= Self.longestCachedWord else { return }
        wordCache.withLock { cache in
            if cache.count >= Self.wordCacheLimit { cache.removeAll(keepingCapacity: true) }
            cache[word] = ids
        }
    }
}
