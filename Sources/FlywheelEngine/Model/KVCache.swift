/// The keys and values of every evaluated position, stored as f16 (half the memory, and half the bytes attention
/// reads per position, of f32; the rounding is within 2^-11 relative, far below the activations' Q8_0 rounding).
/// Values are laid out
/// [layer][kvHead][position][headDimension]; keys [layer][kvHead][position / 8][headDimension][position % 8],
/// blocks of 8 positions stored dimension-major, so the scores of 8 positions are one vector sum over the
/// dimensions (`TransformerMath.scores`) with no horizontal additions.
///
/// Memory is allocated by need: `capacity` positions now, grown by `reserve` up to `maxCapacity` (the
/// sequence's context), so a slot serving short chats does not hold its worst case.
///
/// Owned by one `InferenceContext`; not thread-safe beyond the head-disjoint writes the context makes
/// from its pool threads.
final class KVCache {
    let layerCount: Int
    let kvHeadCount: Int
    /// Positions allocated per head now (a whole number of key blocks).
    private(set) var capacity: Int
    /// The most positions the cache may grow to (rounded up to a whole key block).
    let maxCapacity: Int
    /// Positions per key block.
    static let blockLength = 8
    let headDimension: Int
    private var keys: UnsafeMutablePointer<Float16>
    private var values: UnsafeMutablePointer<Float16>

    /// Bytes of keys and values per position.
    static func bytesPerPosition(layerCount: Int, kvHeadCount: Int, headDimension: Int) -> Int {
        2 * layerCount * kvHeadCount * headDimension * MemoryLayout<Float16>.size
    }

    /// Bytes allocated now.
    var allocatedBytes: Int {
        capacity * Self.bytesPerPosition(layerCount: layerCount, kvHeadCount: kvHeadCount, headDimension: headDimension)
    }

    /// A cache for up to `maxCapacity` positions, with `initialCapacity` of them allocated now.
    init(layerCount: Int, kvHeadCount: Int, maxCapacity: Int, initialCapacity: Int, headDimension: Int) {
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.maxCapacity = Self.wholeBlocks(maxCapacity)
        self.capacity = min(self.maxCapacity, Self.wholeBlocks(max(initialCapacity, 1)))
        self.headDimension = headDimension
        let count = layerCount * kvHeadCount * capacity * headDimension
        // Never read before written: attention only reads positions already evaluated.
        keys = .allocate(capacity: count)
        values = .allocate(capacity: count)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// `positions` rounded up to whole key blocks: what a cache holding them allocates.
    static func wholeBlocks(_ positions: Int) -> Int {
        (positions + blockLength - 1) / blockLength * blockLength
    }

    /// Makes room for `positions` positions (at most `maxCapacity`), keeping the first `keeping`. Grows to at
    /// least twice the current size (or exactly `positions` when `exact`), so a sequence growing token by token
    /// copies its cache O(log n) times. Never shrinks.
    func reserve(_ positions: Int, keeping: Int, exact: Bool = false) {
        let needed = min(maxCapacity, Self.wholeBlocks(positions))
        guard needed > capacity else { return }
        let grown = exact ? needed : min(maxCapacity, max(needed, 2 * capacity))
        let count = layerCount * kvHeadCount * grown * headDimension
        let newKeys = UnsafeMutablePointer<Float16>.allocate(capacity: count)
        let newValues = UnsafeMutablePointer<Float16>.allocate(capacity: count)
        Self.copy(min(keeping, capacity), headDimension: headDimension, heads: layerCount * kvHeadCount,
                  from: (keys, values, capacity), to: (newKeys, newValues, grown))
        keys.deallocate()
        values.deallocate()
        keys = newKeys
        values = newValues
        capacity = grown
    }

    /// K for one head: (capacity / 8, headDimension, 8).
    func keys(layer: Int, head: Int) -> UnsafeMutablePointer<Float16> {
        keys + ((layer * kvHeadCount + head) * capacity) * headDimension
    }

    /// Stores the key of one position of one head.       key: (headDimension)
    func storeKey(_ key: UnsafePointer<Float>, layer: Int, head: Int, position: Int) {
        let block = keys(layer: layer, head: head) + (position / KVCache.blockLength) * KVCache.blockLength * headDimension
        let lane = position % KVCache.blockLength
        for d in 0 ..< headDimension { block[d * KVCache.blockLength + lane] = Float16(key[d]) }
    }

    /// Stores the value of one position of one head.     value: (headDimension)
    func storeValue(_ value: UnsafePointer<Float>, layer: Int, head: Int, position: Int) {
        let row = values(layer: layer, head: head) + position * headDimension
        for d in 0 ..< headDimension { row[d] = Float16(value[d]) }
    }

    /// V for one head: (capacity, headDimension).
    func values(layer: Int, head: Int) -> UnsafeMutablePointer<Float16> {
        values + ((layer * kvHeadCount + head) * capacity) * headDimension
    }

    /// Copies the keys and values of positions `0 ..< positions` of every layer and head from `other` (a cache of
    /// the same shape, any capacity of at least `positions`).
    func copyPrefix(of other: KVCache, positions: Int) {
        precondition(other.layerCount == layerCount && other.kvHeadCount == kvHeadCount
                     && other.headDimension == headDimension && positions <= other.capacity && positions <= maxCapacity,
                     "cache shapes")
        guard positions > 0 else { return }
        reserve(positions, keeping: 0)
        Self.copy(positions, headDimension: headDimension, heads: layerCount * kvHeadCount,
                  from: (other.keys, other.values, other.capacity), to: (keys, values, capacity))
    }

    /// Copies positions `0 ..< positions` of every (layer, head) between two caches' storage of the given
    /// capacities (positions per head): keys in whole blocks, values row by row.
    private static func copy(
        _ positions: Int, headDimension: Int, heads: Int,
        from source: (keys: UnsafeMutablePointer<Float16>, values: UnsafeMutablePointer<Float16>, capacity: Int),
        to target: (keys: UnsafeMutablePointer<Float16>, values: UnsafeMutablePointer<Float16>, capacity: Int)
    ) {
        guard positions > 0 else { return }
        let keyElements = wholeBlocks(positions) * headDimension
        for unit in 0 ..< heads {
            (target.keys + unit * target.capacity * headDimension)
                .update(from: source.keys + unit * source.capacity * headDimension, count: keyElements)
            (target.values + unit * target.capacity * headDimension)
                .update(from: source.values + unit * source.capacity * headDimension, count: positions * headDimension)
        }
    }
}
