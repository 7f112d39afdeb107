extension Tokenizer {
    /// The text of `ids`.
    ///
    /// - Parameters:
    ///   - skipSpecial: leave out control and unknown tokens (BOS, `<|im_end|>` ...). User-defined
    ///     tokens are always kept.
    ///   - asContinuation: the ids continue earlier text (generated tokens after a prompt). When `false`
    ///     and the vocabulary adds a space prefix (SentencePiece), the space that prefix put before the
    ///     first word is dropped, as SentencePiece and Hugging Face do.
    /// Bytes that do not form valid UTF-8 become U+FFFD; out-of-range ids are ignored.
    public func decode(_ ids: [Int32], skipSpecial: Bool = false, asContinuation: Bool = false) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(ids.count * 4)
        var stripsLeadingSpace = addsSpacePrefix && !asContinuation
        for id in ids {
            appendPiece(of: id, skipSpecial: skipSpecial, stripsLeadingSpace: &stripsLeadingSpace, to: &bytes)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The bytes token `id` contributes to decoded text.
    ///
    /// `stripsLeadingSpace` is set while the prefix space is still to be removed; the first token that
    /// produces bytes clears it, and drops its leading space if it is a normal token.
    func appendPiece(of id: Int32, skipSpecial: Bool, stripsLeadingSpace: inout Bool, to bytes: inout [UInt8]) {
        guard id >= 0, Int(id) < vocabularySize else { return }
        let type = types[Int(id)]
        if skipSpecial, type == .control || type == .unknown { return }
        var start = pieceOffsets[Int(id)]
        let end = pieceOffsets[Int(id) + 1]
        guard start < end else { return }
        if stripsLeadingSpace {
            stripsLeadingSpace = false
            if type == .normal, pieceBytes[start] == 0x20 { start += 1 }
        }
        bytes.append(contentsOf: pieceBytes[start ..< end])
    }
}
