extension PreTokenizer {
    /// Letter-case groups of the Tekken regex: `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` ("upper") and
    /// `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` ("lower"); caseless letters and marks are both.
    private struct CaseGroups: OptionSet {
        let rawValue: UInt8
        static let upper = CaseGroups(rawValue: 1)
        static let lower = CaseGroups(rawValue: 2)

        init(rawValue: UInt8) { self.rawValue = rawValue }

        init(_ scalar: Unicode.Scalar) {
            switch scalar.value {
            case 0x41 ... 0x5A: self = .upper
            case 0x61 ... 0x7A: self = .lower
            case 0 ..< 0x80: self = []
            default:
                switch scalar.properties.generalCategory {
                case .uppercaseLetter, .titlecaseLetter: self = .upper
                case .lowercaseLetter: self = .lower
                case .modifierLetter, .otherLetter, .nonspacingMark, .spacingMark, .enclosingMark: self = [.upper, .lower]
                default: self = []
                }
            }
        }
    }

    /// Tekken (Mistral Nemo and later):
    /// `[^\r\n\p{L}\p{N}]?[UPPER]*[LOWER]+|[^\r\n\p{L}\p{N}]?[UPPER]+[LOWER]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    /// with UPPER = `\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}` and LOWER = `\p{Ll}\p{Lm}\p{Lo}\p{M}`.
    static func splitTekken(_ s: [Unicode.Scalar], _ classes: [ScalarClass], into ends: inout [Int]) {
        let end = s.count
        let groups = s.map(CaseGroups.init)
        func run(from i: Int, _ group: CaseGroups) -> Int {
            var j = i
            while j < end, groups[j].contains(group) { j += 1 }
            return j
        }
        // `[UPPER]*[LOWER]+` from `i`: the greedy upper run gives back characters until one is lower.
        func upperThenLower(from i: Int) -> Int? {
            var k = run(from: i, .upper)
            while k >= i {
                if k < end, groups[k].contains(.lower) { return run(from: k, .lower) }
                k -= 1
            }
            return nil
        }
        // `[UPPER]+[LOWER]*` from `i`.
        func upperRun(from i: Int) -> Int? {
            let k = run(from: i, .upper)
            return k > i ? run(from: k, .lower) : nil
        }

        var i = 0
        while i < end {
            let c = classes[i]
            // `[^\r\n\p{L}\p{N}]?`: one leading character that is not a letter, digit or newline.
            let mayLead = c != .letter && c != .number && c != .newline
            var next: Int
            if let match = (mayLead ? upperThenLower(from: i + 1) : nil) ?? upperThenLower(from: i) {
                next = match
            } else if let match = (mayLead ? upperRun(from: i + 1) : nil) ?? upperRun(from: i) {
                next = match
            } else if c == .number {
                next = i + 1
            } else if c == .other || (c == .space && i + 1 < end && classes[i + 1] == .other) {
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
