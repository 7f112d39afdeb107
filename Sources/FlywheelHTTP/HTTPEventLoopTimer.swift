/// A one-shot timer of an `HTTPEventLoop`, returned by `schedule(afterMilliseconds:_:)`; pass it to `cancel`.
/// Only its loop's thread touches its state (the class is `Sendable` so it can be handed around as a token).
public final class HTTPEventLoopTimer: @unchecked Sendable {
    // Safety: `due`, `heapIndex` and `callback` are read and written only on the owning loop's thread (the
    // scheduling, cancelling and firing methods all trap elsewhere).
    var due: UInt64
    var heapIndex = -1
    var callback: (() -> Void)?

    init(due: UInt64, callback: @escaping () -> Void) {
        self.due = due
        self.callback = callback
    }

    /// True until it fired or was cancelled. Loop thread only.
    public var isPending: Bool { callback != nil }
}

/// Indexed binary min-heap of loop timers by due time: O(log n) insert, cancel and pop. Loop thread only.
struct LoopTimerHeap {
    private var items: [HTTPEventLoopTimer] = []

    init() { items.reserveCapacity(64) }

    var nextDue: UInt64? { items.first?.due }

    mutating func insert(_ timer: HTTPEventLoopTimer) {
        timer.heapIndex = items.count
        items.append(timer)
        siftUp(items.count - 1)
    }

    mutating func remove(_ timer: HTTPEventLoopTimer) {
        let index = timer.heapIndex
        guard index >= 0, index < items.count, items[index] === timer else { return }
        let last = items.count - 1
        if index != last {
            items.swapAt(index, last)
            items[index].heapIndex = index
        }
        items.removeLast()
        timer.heapIndex = -1
        if index < items.count {
            siftDown(index)
            siftUp(index)
        }
    }

    mutating func popDue(now: UInt64) -> HTTPEventLoopTimer? {
        guard let first = items.first, first.due <= now else { return nil }
        remove(first)
        return first
    }

    mutating func removeAll() {
        for timer in items {
            timer.heapIndex = -1
            timer.callback = nil
        }
        items.removeAll()
    }

    private mutating func siftUp(_ start: Int) {
        var child = start
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].due < items[parent].due else { break }
            swapItems(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        let n = items.count
        while true {
            let left = 2 * parent + 1
            guard left < n else { break }
            var smallest = left
            if left + 1 < n, items[left + 1].due < items[left].due { smallest = left + 1 }
            guard items[smallest].due < items[parent].due else { break }
            swapItems(parent, smallest)
            parent = smallest
        }
    }

    private mutating func swapItems(_ a: Int, _ b: Int) {
        items.swapAt(a, b)
        items[a].heapIndex = a
        items[b].heapIndex = b
    }
}

/// A descriptor some other component owns, watched through `HTTPEventLoop.watch`. Loop thread only.
final class ForeignWatcher: EventLoopHandler {
    var callback: (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void

    init(_ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void) {
        self.callback = callback
    }

    func handleEvents(_ events: EpollEvents) {
        let error = !events.isDisjoint(with: [.error, .hangup])
        callback(events.contains(.input) || events.contains(.readHangup), events.contains(.output), error)
    }

    func tick(nowNanos: UInt64) {}
    func loopWillStop() {}
}
