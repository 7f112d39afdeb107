/// Byte-level BPE over token ids: repeatedly merges the adjacent pair with the lowest merge rank
/// (leftmost first on ties) until no ranked pair remains.
///
/// Works on ids rather than strings: validation guarantees both halves and the result of every merge
/// are tokens, so a merge is `(left id, right id) -> (rank, result id)`. A heap of candidate pairs over
/// a linked list of symbols keeps a word of n symbols at O(n log n).
struct BytePairMerger: Sendable {
    /// `left << 32 | right` -> `rank << 32 | result`.
    private let pairs: [UInt64: UInt64]

    init(merges: [String], table: TokenTextTable) {
        var pairs: [UInt64: UInt64] = [:]
        pairs.reserveCapacity(merges.count)
        for (rank, merge) in merges.enumerated() {
            // Validated by TokenizerVocabulary: both parts and the result are tokens.
            guard let (left, right) = TokenizerVocabulary.splitMerge(merge),
                  let l = table.id(of: left), let r = table.id(of: right), let m = table.id(of: left + right)
            else { continue }
            let key = UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))
            if pairs[key] == nil { pairs[key] = UInt64(rank) << 32 | UInt64(UInt32(m)) }
        }
        self.pairs = pairs
    }

    private struct Candidate: Comparable {
        var order: UInt64  // rank << 32 | left position: lowest rank, then leftmost
        var right: Int32
        var leftID: Int32
        var rightID: Int32

        static func < (a: Candidate, b: Candidate) -> Bool { a.order < b.order }
    }

    private func lookup(_ left: Int32, _ right: Int32) -> (rank: UInt64, result: Int32)? {
        guard let value = pairs[UInt64(UInt32(left)) << 32 | UInt64(UInt32(right))] else { return nil }
        return (value >> 32, Int32(truncatingIfNeeded: value & 0xFFFF_FFFF))
    }

    /// Merges `symbols` (one id per byte of the word) in place. Ids below zero stand for bytes the
    /// vocabulary lacks; they never merge.
    func merge(_ symbols: inout [Int32]) {
        let n = symbols.count
        guard n >= 2 else { return }
        if n == 2 {
            if symbols[0] >= 0, symbols[1] >= 0, let pair = lookup(symbols[0], symbols[1]) {
                symbols = [pair.result]
            }
            return
        }
        var next = [Int32](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0 ..< n { buffer[i] = Int32(i + 1) }
            buffer[n - 1] = -1
            count = n
        }
        var prev = [Int32](unsafeUninitializedCapacity: n) { buffer, count in
            for i in 0 ..< n { buffer[i] = Int32(i - 1) }
            count = n
        }
        var alive = [Bool](repeating: true, count: n)
        var queue = BinaryHeap<Candidate>()

        func consider(_ left: Int32, _ right: Int32) {
            guard left >= 0, right >= 0 else { return }
            let l = symbols[Int(left)], r = symbols[Int(right)]
            guard l >= 0, r >= 0, let pair = lookup(l, r) else { return }
            queue.push(Candidate(order: pair.rank << 32 | UInt64(left), right: right, leftID: l, rightID: r))
        }

        for i in 0 ..< n - 1 { consider(Int32(i), Int32(i + 1)) }

        while let top = queue.popMin() {
            let left = Int(top.order & 0xFFFF_FFFF), right = Int(top.right)
            // Stale entries: a side was merged away, or changed id, since this pair was queued.
            guard alive[left], alive[right], next[left] == top.right,
                  symbols[left] == top.leftID, symbols[right] == top.rightID,
                  let pair = lookup(top.leftID, top.rightID) else { continue }
            symbols[left] = pair.result
            alive[right] = false
            let after = next[right]
            next[left] = after
            if after >= 0 { prev[Int(after)] = Int32(left) }
            consider(prev[left], Int32(left))
            consider(Int32(left), after)
        }

        var merged: [Int32] = []
        var i: Int32 = 0
        while i >= 0 {
            merged.append(symbols[Int(i)])
            i = next[Int(i)]
        }
        symbols = merged
    }
}
