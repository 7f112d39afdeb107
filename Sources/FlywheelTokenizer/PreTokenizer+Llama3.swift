extension PreTokenizer {
    /// Llama 3 (`maximumDigits` 3) and Qwen2 (`maximumDigits` 1):
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    static func splitLlama3(_ s: [Unicode.Scalar], _ classes: [ScalarClass], maximumDigits: Int, into ends: inout [Int]) {
        let end = s.count
        var i = 0
        while i < end {
            let c = classes[i]
            let following = i + 1 < end ? classes[i + 1] : nil
            var next: Int
            let contraction = contractionLength(s, i, end: end, caseInsensitive: true)
            if contraction > 0 {
                next = i + contraction
            } else if c == .letter {
                next = runEnd(classes, from: i, end: end) { $0 == .letter }
            } else if c != .newline, c != .number, following == .letter {
                // One non-letter, non-digit, non-newline character (a space, tab, quote ...) leads the word.
                next = runEnd(classes, from: i + 1, end: end) { $0 == .letter }
            } else if c == .number {
                next = min(runEnd(classes, from: i, end: end) { $0 == .number }, i + maximumDigits)
            } else if c == .other || (c == .space && following == .other) {
                let symbols = runEnd(classes, from: c == .space ? i + 1 : i, end: end) { $0 == .other }
                next = runEnd(classes, from: symbols, end: end) { $0 == .newline }
            } else {
                next = whitespaceEnd(classes, from: i, end: end)
            }
            ends.append(next)
            i = next
        }
    }
}
