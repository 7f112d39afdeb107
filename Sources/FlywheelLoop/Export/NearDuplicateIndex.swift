import Foundation

/// Finds near-duplicate texts in one pass with memory capped by design: MinHash signatures over word n-grams,
/// candidates found by locality-sensitive hashing (bands of rows), each candidate checked against a compact copy
/// of the earlier text's signature.
///
/// - Signature: classic MinHash (Broder, 1997) with `hashCount` hash functions: the chance that two texts' minima
///   agree under one function is the Jaccard similarity of their shingle sets. Each shingle is hashed once and the
///   functions are derived from that hash in SIMD lanes (a seed per lane, then a multiply-xorshift mix). One
///   permutation hashing was tried and dropped: its densified empty bins copy their neighbours, so bands agree
///   far more often than `s^rows` on texts of about as many shingles as bins.
/// - Shingles: overlapping runs of `shingleWords` words (lowercased ASCII; bytes >= 0x80 count as word bytes so
///   that UTF-8 text is kept whole). A text with fewer words is one shingle. A text with no word is not indexed.
/// - Candidates: `bands` bands of `rows` hashes; two texts whose signatures agree on a whole band are candidates,
///   which happens with probability `1 - (1 - s^rows)^bands` at Jaccard similarity `s`: an S-curve whose midpoint,
///   `(1/bands)^(1/rows)`, sits at the threshold (Leskovec, Rajaraman and Ullman, Mining of Massive Datasets,
///   ch. 3.4).
/// - Check: a candidate is a duplicate only if the similarity estimated from the two signatures reaches the
///   threshold. Each indexed text keeps the low 8 bits of its hashes (b-bit minwise hashing, Li and König, 2010:
///   agreement is `s + (1 - s) / 256`, corrected for). Without this check, templated traffic, where every text has
///   thousands of neighbours at a middling similarity, would lose most of its lines to chance band matches.
/// - Memory: a table of band keys (32-bit fingerprint and the text's number, open addressing, grown by doubling
///   or to what the limit leaves) and 64 bytes of signature per indexed text, together at most `memoryLimit`
///   (about 150 bytes per text at the default threshold). When that is reached, texts are
///   still checked against the index but no longer added, and `fullAfter` says after how many texts.
struct NearDuplicateIndex {
    static let hashCount = 64
    private static let vectors = hashCount / 16
    static let shingleWords = 5

    /// The threshold asked for, and the banding closest to it.
    let threshold: Double
    let bands: Int
    let rows: Int
    let memoryLimit: Int
    /// Texts added to the index.
    private(set) var indexed = 0
    /// Set when the index reached its memory limit: the number of texts indexed by then.
    private(set) var fullAfter: Int?

    /// Band-key slots: a fingerprint and the owning text's number + 1 (0: empty).
    private var fingerprints: [UInt32]
    private var owners: [UInt32]
    private var used = 0
    /// The low byte of each hash of every indexed text, `hashCount` bytes a text.
    private var signatures: [UInt8] = []
    private var signature = [SIMD16<UInt32>](repeating: .init(repeating: .max), count: NearDuplicateIndex.vectors)

    /// The midpoint of the banding's S-curve.
    var bandingMidpoint: Double { Self.midpoint(bands: bands, rows: rows) }
    var memoryUsed: Int { fingerprints.count * 8 + signatures.count }

    init(threshold: Double, memoryLimit: Int) {
        self.threshold = threshold
        (bands, rows) = Self.banding(for: threshold)
        self.memoryLimit = memoryLimit
        fingerprints = [UInt32](repeating: 0, count: 1 << 10)
        owners = [UInt32](repeating: 0, count: 1 << 10)
    }

    static func midpoint(bands: Int, rows: Int) -> Double { pow(1 / Double(bands), 1 / Double(rows)) }

    /// The bands and rows (`bands * rows <= hashCount`) whose S-curve midpoint is closest to `threshold`.
    static func banding(for threshold: Double) -> (bands: Int, rows: Int) {
        var best = (bands: 1, rows: hashCount)
        for b in 1...hashCount {
            let r = hashCount / b
            if abs(midpoint(bands: b, rows: r) - threshold) < abs(midpoint(bands: best.bands, rows: best.rows) - threshold) {
                best = (b, r)
            }
        }
        return best
    }

    /// True when `text` is a near-duplicate of a text seen before; otherwise it is added (while there is room)
    /// and the answer is false. Nil for a text with no words (left to the exact check).
    mutating func isDuplicate(_ text: [UInt8]) -> Bool? {
        guard sign(text) else { return nil }
        var keys: [UInt32] = []
        keys.reserveCapacity(bands)
        for band in 0..<bands {
            var k = Self.mix(UInt64(band) &+ 0x5EED)
            for i in band * rows..<(band + 1) * rows { k = Self.mix(k ^ UInt64(signature[i / 16][i % 16])) }
            let key = UInt32(truncatingIfNeeded: k >> 32) | 1
            if hasSimilar(key) { return true }
            keys.append(key)
        }
        guard fullAfter == nil else { return false }
        var slots = fingerprints.count
        if (used + bands) * 4 > slots * 3 {
            // Double, or take what the limit leaves if that is still a quarter more.
            let room = (memoryLimit - signatures.count - Self.hashCount) / 8
            slots = min(slots * 2, room) >= slots + slots / 4 ? min(slots * 2, room) : 0
        }
        guard slots > 0, signatures.count + Self.hashCount + slots * 8 <= memoryLimit, indexed < Int(UInt32.max) - 1 else {
            fullAfter = indexed
            return false
        }
        if slots != fingerprints.count { grow(to: slots) }
        for i in 0..<Self.hashCount { signatures.append(UInt8(truncatingIfNeeded: signature[i / 16][i % 16])) }
        indexed += 1
        for key in keys { insert(key, owner: UInt32(indexed)) }
        return false
    }

    /// Whether a text holding band key `key` is similar enough to the current signature.
    private func hasSimilar(_ key: UInt32) -> Bool {
        var i = slot(key)
        while owners[i] != 0 {
            if fingerprints[i] == key, similarity(to: Int(owners[i]) - 1) >= threshold { return true }
            i = i + 1 == owners.count ? 0 : i + 1
        }
        return false
    }

    /// The Jaccard similarity estimated from the current signature and indexed text `n`'s low bytes.
    private func similarity(to n: Int) -> Double {
        var agree = 0
        signatures.withUnsafeBufferPointer { stored in
            let base = n * Self.hashCount
            for i in 0..<Self.hashCount where stored[base + i] == UInt8(truncatingIfNeeded: signature[i / 16][i % 16]) {
                agree += 1
            }
        }
        // Bytes agree by chance 1 time in 256 when the minima differ.
        return (Double(agree) / Double(Self.hashCount) - 1.0 / 256) / (1 - 1.0 / 256)
    }

    // MARK: signature

    /// Fills `signature` with the minimum of each hash function over the text's shingles; false when the text has
    /// no word.
    private mutating func sign(_ text: [UInt8]) -> Bool {
        for i in signature.indices { signature[i] = SIMD16(repeating: .max) }
        var window = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var words = 0
        var word: UInt64 = 0xCBF2_9CE4_8422_2325
        var inWord = false
        for byte in text {
            let isWordByte = byte >= 0x80 || (byte >= 0x30 && byte <= 0x39) || (byte | 0x20 >= 0x61 && byte | 0x20 <= 0x7A)
            if isWordByte {
                let b = byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte
                word = (word ^ UInt64(b)) &* 0x0000_0100_0000_01B3
                inWord = true
            } else if inWord {
                window = (window.1, window.2, window.3, window.4, Self.mix(word))
                words += 1
                if words >= Self.shingleWords { add(shingle: window) }
                word = 0xCBF2_9CE4_8422_2325
                inWord = false
            }
        }
        if inWord {
            window = (window.1, window.2, window.3, window.4, Self.mix(word))
            words += 1
            if words >= Self.shingleWords { add(shingle: window) }
        }
        guard words > 0 else { return false }
        // A text shorter than a shingle is one shingle of all its words (zeros before them).
        if words < Self.shingleWords { add(shingle: window) }
        return true
    }

    /// Hashes a shingle once, then derives the `hashCount` hash functions from it lane by lane: each lane xors its
    /// own seed in and mixes (multiply, xorshift), so the lanes order the shingles independently.
    private mutating func add(shingle w: (UInt64, UInt64, UInt64, UInt64, UInt64)) {
        var s = w.0
        s = Self.mix(s &* 0x9E37_79B9_7F4A_7C15 ^ w.1)
        s = Self.mix(s &* 0x9E37_79B9_7F4A_7C15 ^ w.2)
        s = Self.mix(s &* 0x9E37_79B9_7F4A_7C15 ^ w.3)
        s = Self.mix(s &* 0x9E37_79B9_7F4A_7C15 ^ w.4)
        let x = SIMD16<UInt32>(repeating: UInt32(truncatingIfNeeded: s ^ s >> 32))
        for i in 0..<Self.vectors {
            var h = (x ^ Self.seeds[i]) &* 0x9E37_79B1
            h ^= h &>> 15
            h &*= 0x85EB_CA77
            h ^= h &>> 13
            h &*= 0xC2B2_AE3D
            h ^= h &>> 16
            signature[i] = pointwiseMin(signature[i], h)
        }
    }

    /// One seed per hash function, fixed, so an index gives the same answers in every run.
    private static let seeds: [SIMD16<UInt32>] = (0..<vectors).map { v in
        SIMD16((0..<16).map { lane in UInt32(truncatingIfNeeded: mix(UInt64(v * 16 + lane) &+ 0xF1A7_3EED)) })
    }

    // MARK: table

    /// The first slot to probe: the key's mix scaled to the table size (a multiply, so any size works).
    private func slot(_ key: UInt32) -> Int {
        Int(truncatingIfNeeded: Self.mix(UInt64(key)).multipliedFullWidth(by: UInt64(owners.count)).high)
    }

    /// Adds a band key; a key already held by 8 texts is not added again (its chain stays short, and a text like
    /// those is found through them).
    private mutating func insert(_ key: UInt32, owner: UInt32) {
        var i = slot(key)
        var same = 0
        while owners[i] != 0 {
            if fingerprints[i] == key { same += 1; if same == 8 { return } }
            i = i + 1 == owners.count ? 0 : i + 1
        }
        fingerprints[i] = key
        owners[i] = owner
        used += 1
    }

    /// Moves the keys into a table of `count` slots.
    private mutating func grow(to count: Int) {
        let (oldKeys, oldOwners) = (fingerprints, owners)
        fingerprints = [UInt32](repeating: 0, count: count)
        owners = [UInt32](repeating: 0, count: count)
        used = 0
        for i in oldKeys.indices where oldOwners[i] != 0 { insert(oldKeys[i], owner: oldOwners[i]) }
    }

    /// splitmix64's finaliser: a well-spread 64-bit mix.
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ z >> 30) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ z >> 27) &* 0x94D0_49BB_1331_11EB
        return z ^ z >> 31
    }
}
