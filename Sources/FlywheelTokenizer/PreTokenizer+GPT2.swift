extension PreTokenizer {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`,
    /// alternatives tried in order at each position, as the regex engine does.
    static func splitGPT2(_ s: [Unicode.Scalar], _ classes: [ScalarClass], _ range: Range<Int>, into ends: inout [Int]) {
        let end = range.upperBound
        var i = range.lowerBound
        while i < end {
            let c = classes[i]
            // A lone leading space may join the letter, number or symbol run after it.
            let body = c == .space && i + 1 < end ? classes[i + 1] : c
            let bodyStart = c == .space && i + 1 < end ? i + 1 : i
            var next: Int
            let contraction = contractionLength(s, i, end: end, caseInsensitive: false)
            if contraction > 0 {
                next = i + contraction
            } else if body == .letter {
                next = runEnd(classes, from: bodyStart, end: end) { $0 == .letter }
            } else if body == .number {
                next = runEnd(classes, from: bodyStart, end: end) { $0 == .number }
            } else if body == .other {
                next = runEnd(classes, from: bodyStart, end: end) { $0 == .other }
            } else {
                // Whitespace: `\s+(?!\S)` leaves the last space of a run for the word after it.
                let runEndIndex = runEnd(classes, from: i, end: end) { $0.isWhitespace }
                if runEndIndex == end || runEndIndex - i == 1 {
                    next = runEndIndex
                } else {
                    next = runEndIndex - 1
                }
            }
            ends.append(next)
            i = next
        }
    }
}
