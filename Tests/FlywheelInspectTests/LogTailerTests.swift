import XCTest
import FlywheelStore
@testable import FlywheelInspect

final class LogTailerTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tailer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func record(_ i: Int, status: Int = 200, model: String = "m") -> RequestRecord {
        var r = RequestRecord(id: "r\(i)", createdAtMillis: 1_000 + Int64(i), method: "POST", endpoint: "/v1/chat/completions",
                              requestJSON: "{}", status: status, latencyMillis: 1)
        r.modelRequested = model
        return r
    }

    func testPrintsNewestRowsOldestFirstWithFilters() throws {
        let path = directory.appendingPathComponent("log.db").path
        let writer = try SQLiteLogWriter(path: path)
        for i in 0..<10 { writer.enqueue(record(i, status: i == 7 ? 502 : 200, model: i % 2 == 0 ? "even" : "odd")) }
        writer.close()
        var lines: [String] = []
        var options = LogTailer.Options()
        options.count = 3
        try LogTailer(reader: try SQLiteLogReader(path: path), options: options) { lines.append($0) }.run { true }
        XCTAssertEqual(lines.map { $0.split(separator: " ", omittingEmptySubsequences: true)[1] }, ["r7", "r8", "r9"])

        lines = []
        options.count = 10
        options.filter = RequestFilter(errorsOnly: true)
        try LogTailer(reader: try SQLiteLogReader(path: path), options: options) { lines.append($0) }.run { true }
        XCTAssertEqual(lines.count, 1)
        XCTAssertTrue(lines[0].contains("r7"))
    }

    func testFollowPrintsRowsThatLandLater() throws {
        let path = directory.appendingPathComponent("log.db").path
        let writer = try SQLiteLogWriter(path: path)
        writer.enqueue(record(0))
        writer.flush()
        var lines: [String] = []
        var options = LogTailer.Options()
        options.follow = true
        options.json = true
        options.includeFeedback = true
        options.pollInterval = 0.05
        let deadline = Date().addingTimeInterval(10)
        var wrote = false
        try LogTailer(reader: try SQLiteLogReader(path: path), options: options) { lines.append($0) }.run {
            if !wrote {
                wrote = true
                writer.enqueue(self.record(1))
                writer.submitFeedback(FeedbackRecord(requestID: "r0", createdAtMillis: 5_000, signal: .accepted)) { _ in }
            }
            return lines.count >= 3 || Date() > deadline
        }
        writer.close()
        XCTAssertEqual(lines.count, 3)
        XCTAssertTrue(lines[1].contains(#""id":"r1""#))
        XCTAssertTrue(lines[2].contains(#""type":"feedback""#))
    }
}
