/// Token text -> id lookup over UTF-8 byte ranges, without building a `String` per query.
///
/// The encoders look up many short byte runs (candidate merges, pre-tokenized words); an open-addressing
/// table over one flat byte buffer answers those from a slice of an existing array with no allocation.
struct TokenTextTable: Sendable {
    private let bytes: [UInt8]
    private let offsets: [Int]  // token i spans bytes[offsets[i] ..< offsets[i + 1]]
    private let slots: [Int32]  // token id, or -1 for an empty slot
    private let mask: Int

    /// Indexes `texts`; when two texts are equal the lower id wins.
    init(_ texts: [String]) {
        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        offsets.reserveCapacity(texts.count + 1)
        for text in texts {
            bytes.append(contentsOf: text.utf8)
            offsets.append(bytes.count)
        }
        var capacity = 16
        while capacity < texts.count * 2 { capacity <<= 1 }
        var slots = [Int32](repeating: -1, count: capacity)
        let mask = capacity - 1
        bytes.withUnsafeBufferPointer { all in
            for id in texts.indices {
                let start = offsets[id], end = offsets[id + 1]
                var slot = Self.hash(all, start, end) & mask
                var duplicate = false
                while slots[slot] >= 0 {
                    let other = Int(slots[slot])
                    if Self.equal(all, start, end, all, offsets[other], offsets[other + 1]) {
                        duplicate = true
                        break
                    }
                    slot = (slot + 1) & mask
                }
                if !duplicate { slots[slot] = Int32(id) }
            }
        }
        self.bytes = bytes
        self.offsets = offsets
        self.slots = slots
        self.mask = mask
    }

    /// The id of the token whose text is `query[range]`.
    func id(of query: [UInt8], _ range: Range<Int>) -> Int32? {
        query.withUnsafeBufferPointer { q in
            bytes.withUnsafeBufferPointer { all in
                var slot = Self.hash(q, range.lowerBound, range.upperBound) & mask
                while true {
                    let id = Int(slots[slot])
                    if id < 0 { return nil }
                    if Self.equal(q, range.lowerBound, range.upperBound, all, offsets[id], offsets[id + 1]) {
                        return Int32(id)
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
    }

    /// The id of the token whose text is `text`.
    func id(of text: String) -> Int32? {
        let query = Array(text.utf8)
        return id(of: query, 0 ..< query.count)
    }

    // FNV-1a, 64 bit.
    private static func hash(_ p: UnsafeBufferPointer<UInt8>, _ start: Int, _ end: Int) -> Int {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for i in start ..< end {
            h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01B3
        }
        return Int(truncatingIfNeeded: h ^ (h >> 29))
    }

    private static func equal(
        _ a: UnsafeBufferPointer<UInt8>, _ aStart: Int, _ aEnd: Int,
        _ b: UnsafeBufferPointer<UInt8>, _ bStart: Int, _ bEnd: Int
    ) -> Bool {
        guard aEnd - aStart == bEnd - bStart else { return false }
        var i = aStart, j = bStart
        while i < aEnd {
            if a[i] != b[j] { return false }
            i += 1
            j += 1
        }
        return true
    }
}
