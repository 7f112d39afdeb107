import Foundation
import XCTest
@testable import FlywheelLoop

final class JSONLLinesTests: XCTestCase {
    /// Lines come out numbered across block boundaries; blank lines are skipped but counted; a line over the
    /// limit is reported as nil (never held whole) and reading goes on.
    func testLinesBlankLinesAndAnOversizedLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("jsonl-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let long = String(repeating: "x", count: 300_000)
        let edge = String(repeating: "y", count: (1 << 16) - 3)  // ends near a block boundary
        try Data(("{\"a\":1}\n\n  \n" + long + "\n" + edge + "\n{\"b\":2}").utf8).write(to: URL(fileURLWithPath: path))
        var seen: [(Int, Int?)] = []
        try JSONLLines.forEach(path: path, maxLineBytes: 100_000) { number, bytes in seen.append((number, bytes?.count)) }
        XCTAssertEqual(seen.map(\.0), [1, 4, 5, 6])
        XCTAssertEqual(seen.map(\.1), [7, nil, edge.utf8.count, 7])
        XCTAssertThrowsError(try JSONLLines.forEach(path: path + ".missing", maxLineBytes: 10) { _, _ in })
    }
}
