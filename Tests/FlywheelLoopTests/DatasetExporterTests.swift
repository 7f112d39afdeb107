import Foundation
import FlywheelJSON
import FlywheelStore
import XCTest
@testable import FlywheelLoop

final class DatasetExporterTests: XCTestCase {
    /// A log of chat completions: `rows` of (id, user text, answer, verdict).
    func makeLog(_ rows: [(String, String, String, FeedbackSignal?)]) throws -> (path: String, directory: URL) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("log.db").path
        let writer = try SQLiteLogWriter(path: path)
        for (n, (id, question, answer, _)) in rows.enumerated() {
            let request: JSON = ["model": "m", "messages": [["role": "user", "content": .string(question)]]]
            let response: JSON = ["choices": [["index": 0, "message": ["role": "assistant", "content": .string(answer)]]]]
            var r = RequestRecord(id: id, createdAtMillis: Int64(1_000 + n), method: "POST", endpoint: "/v1/chat/completions",
                                  requestJSON: request.serializedString(), status: 200, latencyMillis: 1)
            r.responseJSON = response.serializedString()
            r.route = "upstream"
            writer.enqueue(r)
        }
        let done = DispatchSemaphore(value: 0)
        for (id, _, _, verdict) in rows {
            guard let verdict else { continue }
            writer.submitFeedback(FeedbackRecord(requestID: id, createdAtMillis: 5_000, signal: verdict)) { _ in done.signal() }
            XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        }
        writer.close()
        return (path, directory)
    }

    func export(_ path: String, _ options: ExportOptions, in directory: URL) throws -> (lines: [JSON], manifest: JSON) {
        let out = directory.appendingPathComponent("out-\(UUID().uuidString).jsonl").path
        let reader = try SQLiteLogReader(path: path)
        let manifest = try DatasetExporter(queries: reader, options: options).run(paths: .init(out: out))
        let text = try String(contentsOfFile: out, encoding: .utf8)
        return (try text.split(separator: "\n").map { try JSONParser.parse(String($0)) }, manifest)
    }

    /// Rejected answers wait in memory for an accepted one to the same prompt; past the bound they are counted,
    /// not held, and the pairs within it are still written.
    func testPreferencePairsFromRejectionsAreBoundedInMemory() throws {
        var rows: [(String, String, String, FeedbackSignal?)] = []
        for i in 0..<5 {
            rows.append(("rej\(i)", "question \(i)", "bad answer \(i)", .rejected))
            rows.append(("acc\(i)", "question \(i)", "good answer \(i)", .accepted))
        }
        let (path, directory) = try makeLog(rows)
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = ExportOptions(format: .dpoTRL)
        options.validationFraction = 0
        let all = try export(path, options, in: directory)
        XCTAssertEqual(all.lines.count, 5)
        XCTAssertEqual(all.lines.first?["chosen"]?[0]?["content"]?.stringValue?.hasPrefix("good answer"), true)
        options.preferenceBuffer = 2
        let bounded = try export(path, options, in: directory)
        XCTAssertEqual(bounded.lines.count, 2)
        XCTAssertEqual(bounded.manifest["dropped"]?["preference_buffer_full"]?.intValue, 3)
    }

    /// Near-duplicates go, exact ones are counted apart, and turning deduplication off keeps them all.
    func testExactAndNearDuplicatesAreCountedApart() throws {
        let long = (0..<200).map { "word\($0 % 17)x\($0)" }.joined(separator: " ")
        let rows: [(String, String, String, FeedbackSignal?)] = [
            ("a", long, "answer", nil), ("b", long, "answer", nil),
            ("c", long.replacingOccurrences(of: "word15x100", with: "changed"), "answer", nil),
            ("d", "something else entirely", "answer", nil),
            ("e", "a question with no answer", "  ", nil),
        ]
        let (path, directory) = try makeLog(rows)
        defer { try? FileManager.default.removeItem(at: directory) }
        var options = ExportOptions(format: .sft)
        options.validationFraction = 0
        let deduplicated = try export(path, options, in: directory)
        XCTAssertEqual(deduplicated.lines.compactMap { $0["flywheel_request_id"]?.stringValue }, ["a", "d"])
        XCTAssertEqual(deduplicated.manifest["dropped"]?["duplicate"]?.intValue, 1)
        XCTAssertEqual(deduplicated.manifest["dropped"]?["near_duplicate"]?.intValue, 1)
        XCTAssertEqual(deduplicated.manifest["dropped"]?["empty_answer"]?.intValue, 1)
        options.deduplicate = false
        let kept = try export(path, options, in: directory)
        XCTAssertEqual(kept.lines.count, 4)  // the empty answer is still left out
        XCTAssertEqual(kept.manifest["deduplication"], "off")
    }
}
