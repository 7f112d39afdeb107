/// Something a `DeadlineHeap` can hold: a class that carries its own deadline and its slot in the heap, so it
/// can be removed in O(log n) without a search.
public protocol DeadlineHeapElement: AnyObject {
    /// When the element is due, in CLOCK_MONOTONIC nanoseconds. Change it only while not in a heap.
    var deadlineNanos: UInt64 { get }
    /// The heap's bookkeeping: the element's index, -1 when it is in no heap. Only `DeadlineHeap` writes it.
    var heapIndex: Int { get set }
}

/// An indexed binary min-heap by deadline: insert, remove and pop in O(log n). Used for the event loops' timers
/// and the upstream client's deadlines. Not thread-safe: one owner thread.
public struct DeadlineHeap<Element: DeadlineHeapElement> {
    @usableFromInline var items: [Element] = []

    public init(reservingCapacity capacity: Int = 64) { items.reserveCapacity(capacity) }

    public var count: Int { items.count }

    /// The earliest deadline, if any element is held.
    @inlinable public var nextDeadline: UInt64? { items.first?.deadlineNanos }

    /// Adds `element`, which must not be in a heap already.
    @inlinable public mutating func insert(_ element: Element) {
        precondition(element.heapIndex < 0, "element already in a heap")
        element.heapIndex = items.count
        items.append(element)
        siftUp(items.count - 1)
    }

    /// Removes `element` if this heap holds it; a no-op otherwise.
    @inlinable public mutating func remove(_ element: Element) {
        let index = element.heapIndex
        guard index >= 0, index < items.count, items[index] === element else { return }
        let last = items.count - 1
        if index != last {
            items.swapAt(index, last)
            items[index].heapIndex = index
        }
        items.removeLast()
        element.heapIndex = -1
        if index < items.count {
            siftDown(index)
            siftUp(index)
        }
    }

    /// Removes and returns the earliest element if it is due at `now`.
    @inlinable public mutating func popDue(now: UInt64) -> Element? {
        guard let first = items.first, first.deadlineNanos <= now else { return nil }
        remove(first)
        return first
    }

    /// Empties the heap, handing each element to `body` after clearing its slot.
    @inlinable public mutating func removeAll(_ body: (Element) -> Void = { _ in }) {
        let all = items
        items.removeAll()
        for element in all {
            element.heapIndex = -1
            body(element)
        }
    }

    @inlinable mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].deadlineNanos < items[parent].deadlineNanos else { break }
            swapItems(child, parent)
            child = parent
        }
    }

    @inlinable mutating func siftDown(_ start: Int) {
        var parent = start
        let n = items.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { break }
            var smallest = left
            if left + 1 < n, items[left + 1].deadlineNanos < items[left].deadlineNanos { smallest = left + 1 }
            guard items[smallest].deadlineNanos < items[parent].deadlineNanos else { break }
            swapItems(parent, smallest)
            parent = smallest
        }
    }

    @inlinable mutating func swapItems(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].heapIndex = a
        items[b].heapIndex = b
    }
}
