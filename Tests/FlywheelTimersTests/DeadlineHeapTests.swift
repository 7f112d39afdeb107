import XCTest
import FlywheelTimers

final class DeadlineHeapTests: XCTestCase {
    final class Item: DeadlineHeapElement {
        var deadlineNanos: UInt64
        var heapIndex = -1
        init(_ d: UInt64) { deadlineNanos = d }
    }

    func testPopsInDeadlineOrderAndRemovesFromTheMiddle() {
        var heap = DeadlineHeap<Item>()
        let items = (0..<200).map { Item(UInt64(($0 * 7919) % 200)) }
        for item in items { heap.insert(item) }
        heap.remove(items[10])
        heap.remove(items[10])  // second removal is a no-op
        XCTAssertEqual(heap.count, 199)
        XCTAssertEqual(items[10].heapIndex, -1)
        var last: UInt64 = 0
        var popped = 0
        while let item = heap.popDue(now: .max) {
            XCTAssertGreaterThanOrEqual(item.deadlineNanos, last)
            XCTAssertEqual(item.heapIndex, -1)
            last = item.deadlineNanos
            popped += 1
        }
        XCTAssertEqual(popped, 199)
        XCTAssertNil(heap.nextDeadline)
    }

    func testOnlyDueItemsPopAndRemoveAllClearsSlots() {
        var heap = DeadlineHeap<Item>()
        let a = Item(5), b = Item(50)
        heap.insert(b)
        heap.insert(a)
        XCTAssertEqual(heap.nextDeadline, 5)
        XCTAssertNil(heap.popDue(now: 4))
        XCTAssertTrue(heap.popDue(now: 5) === a)
        var seen: [Item] = []
        heap.removeAll { seen.append($0) }
        XCTAssertTrue(seen.count == 1 && seen[0] === b && b.heapIndex == -1)
        XCTAssertEqual(heap.count, 0)
        heap.insert(a)  // can be reinserted after leaving
        XCTAssertEqual(heap.count, 1)
    }

    func testItemsOfAnotherHeapAreIgnoredOnRemove() {
        var one = DeadlineHeap<Item>(), two = DeadlineHeap<Item>()
        let x = Item(1), y = Item(2)
        one.insert(x)
        two.insert(y)
        one.remove(y)  // y's index 0 points at x in `one`: must not remove x
        XCTAssertEqual(one.count, 1)
        XCTAssertTrue(one.popDue(now: 10) === x)
    }
}
