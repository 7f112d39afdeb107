/// The keys and values of every evaluated position, f32, laid out [layer][kvHead][position][headDimension]
/// so that attention for one head streams through contiguous memory.
///
/// Owned by one `InferenceContext`; not thread-safe beyond the head-disjoint writes the context makes
/// from its pool threads.
final class KVCache {
    let layerCount: Int
    let kvHeadCount: Int
    /// Positions per head.
    let capacity: Int
    let headDimension: Int
    private let keys: UnsafeMutablePointer<Float>
    private let values: UnsafeMutablePointer<Float>

    init(layerCount: Int, kvHeadCount: Int, capacity: Int, headDimension: Int) {
        self.layerCount = layerCount
        self.kvHeadCount = kvHeadCount
        self.capacity = capacity
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

    /// K for one head: (capacity, headDimension).
    func keys(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        keys + ((layer * kvHeadCount + head) * capacity) * headDimension
    }

    /// V for one head: (capacity, headDimension).
    func values(layer: Int, head: Int) -> UnsafeMutablePointer<Float> {
        values + ((layer * kvHeadCount + head) * capacity) * headDimension
    }
}
