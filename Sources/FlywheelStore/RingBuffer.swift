/// A FIFO queue over a circular buffer with a hard capacity. Storage grows by doubling up to `capacity`
/// and is never shrunk, so steady-state `append`/`popFirst` do not allocate.
/// Not thread-safe: the writer keeps it inside a `Mutex`.
struct RingBuffer<Element> {
    private var storage: [Element?]
    private var head = 0
    private(set) var count = 0
    let capacity: Int

    init(capacity: Int, initialStorage: Int = 1_024) {
        precondition(capacity > 0, "capacity must be positive")
        self.capacity = capacity
        self.storage = Array(repeating: nil, count: Swift.min(capacity, Swift.max(initialStorage, 1)))
    }

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count >= capacity }

    /// Appends unless full; returns false when full.
    mutating func append(_ element: Element) -> Bool {
        if count == storage.count {
            guard storage.count < capacity else { return false }
            grow()
        }
        storage[(head + count) % storage.count] = element
        count += 1
        return true
    }

    mutating func popFirst() -> Element? {
        guard count > 0 else { return nil }
        let element = storage[head].take()
        head = (head + 1) % storage.count
        count -= 1
        return element
    }

    /// Moves up to `max` elements, oldest first, to the end of `destination`.
    mutating func drain(into destination: inout [Element], max: Int) {
        var n = Swift.min(max, count)
        while n > 0, let element = popFirst() {
            destination.append(element)
            n -= 1
        }
    }

    private mutating func grow() {
        let newSize = Swift.min(capacity, storage.count * 2)
        var newStorage: [Element?] = Array(repeating: nil, count: newSize)
        for i in 0..<count {
            newStorage[i] = storage[(head + i) % storage.count].take()
        }
        storage = newStorage
        head = 0
    }
}

extension RingBuffer: Sendable where Element: Sendable {}
