import XCTest
@testable import FlywheelTokenizer

final class BinaryHeapTests: XCTestCase {
    func testPopsInAscendingOrder() {
        var heap = BinaryHeap<Int>()
        var state: UInt64 = 42
        var values: [Int] = []
        for _ in 0 ..< 500 {
            state = state &* 6364136223846793005 &+ 1
            let value = Int(state >> 50)
            values.append(value)
            heap.push(value)
        }
        var popped: [Int] = []
        while let value = heap.popMin() { popped.append(value) }
        XCTAssertEqual(popped, values.sorted())
        XCTAssertTrue(heap.isEmpty)
        XCTAssertNil(heap.popMin())
    }
}
