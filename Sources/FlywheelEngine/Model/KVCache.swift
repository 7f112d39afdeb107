/// The keys and values of every evaluated position, f32. Values are laid out
/// [layer][kvHead][position][headDimension]; keys [layer][kvHead][position / 8][headDimension][position % 8],
/// blocks of 8 positions stored dimension-major, so the scores of 8 positions are one vector sum over the
/// dimensions (`TransformerMath.scores`) with no horizontal additions.
///
/// Owned by one `InferenceContext`; not thread-safe beyond the head-disjoint writes the context makes
/// from its pool threads.
final class KVCache {
    let layerCount: Int
    let kvHeadCount: Int
    /// Positions per head (rounded up to a whole key block).
    let capacity: Int
    /// Positions per key block.
    static let blockLength = 8
    let headDimension: Int
    private let keys: UnsafeMutablePointer<Float>
    private let values: UnsafeMutablePointer<Float>

    init(layerCount: Int, kvHeadCount: Int, capacity: Int, headDimension: Int) {
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.capacity = (capacity + KVCache.blockLength - 1) / KVCache.blockLength * KVCache.blockLength
        self.headDimension = headDimension
        let count = layerCount * kvHeadCount * self.capacity * headDimension
        // Never read before written: attention only reads positions already evaluated.
        keys = .allocate(capacity: count)
        values = .allocate(capacity: count)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// K for one head: (capacity / 8, headDimension, 8).
    func keys(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        keys + ((layer * kvHeadCount + head) * capacity) * headDimension
    }

    /// Stores the key of one position of one head.       key: (headDimension)
    func storeKey(_ key: UnsafePointer<Float>, layer: Int, head: Int, position: Int) {
        let block = keys(layer: layer, head: head) + (position / KVCache.blockLength) * KVCache.blockLength * headDimension
        let lane = position % KVCache.blockLength
        for d in 0 ..< headDimension { block[d * KVCache.blockLength + lane] = key[d] }
    }

    /// Stores the value of one position of one head.     value: (headDimension)
    func storeValue(_ value: UnsafePointer<Float>, layer: Int, head: Int, position: Int) {
        (values(layer: layer, head: head) + position * headDimension).update(from: value, count: headDimension)
    }

    /// V for one head: (capacity, headDimension).
    func values(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        values + ((layer * kvHeadCount + head) * capacity) * headDimension
    }

    /// Copies the keys and values of positions `0 ..< positions` of every layer and head from `other` (a cache of
    /// the same shape, any capacity of at least `positions`).
    func copyPrefix(of other: KVCache, positions: Int) {
        precondition(other.layerCount == layerCount && other.kvHeadCount == kvHeadCount
                     && other.headDimension == headDimension && positions <= capacity && positions <= other.capacity,
                     "cache shapes")
        guard positions > 0 else { return }
        let keyFloats = (positions + KVCache.blockLength - 1) / KVCache.blockLength * KVCache.blockLength * headDimension
        for layer in 0 ..< layerCount {
            for head in 0 ..< kvHeadCount {
                keys(layer: layer, head: head).update(from: other.keys(layer: layer, head: head), count: keyFloats)
                values(layer: layer, head: head).update(from: other.values(layer: layer, head: head),
                                                        count: positions * headDimension)
            }
        }
    }
}
