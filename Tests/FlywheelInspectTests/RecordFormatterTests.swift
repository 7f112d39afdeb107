import XCTest
import FlywheelJSON
import FlywheelStore
@testable import FlywheelInspect

final class RecordFormatterTests: XCTestCase {
    func sampleRecord() -> RequestRecord {
        var r = RequestRecord(id: "req-1", createdAtMillis: 1_764_000_000_123, method: "POST", endpoint: "/v1/chat/completions",
                              requestJSON: #"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"What is 2+2?"}]}"#,
                              status: 200, latencyMillis: 12.3456)
        r.modelRequested = "m"
        r.modelServed = "m-2024"
        r.route = "upstream"
        r.responseJSON = #"{"model":"m-2024","choices":[{"index":0,"message":{"role":"assistant","content":"Four."}}]}"#
        r.promptTokens = 5
        r.completionTokens = 2
        r.totalTokens = 7
        r.tags = ["a", "b"]
        r.metadataJSON = #"{"k":"v"}"#
        return r
    }

    func testJSONEmbedsBodiesAndFeedback() throws {
        var f = FeedbackRecord(requestID: "req-1", createdAtMillis: 1_764_000_001_000, signal: .score)
        f.value = 0.5
        let json = RecordFormatter.json(sampleRecord(), feedback: [f])
        XCTAssertEqual(json["created_at"], "2025-11-24T16:00:00.123Z")
        XCTAssertEqual(json["request"]?["messages"]?[1]?["content"], "What is 2+2?")
        XCTAssertEqual(json["response"]?["choices"]?[0]?["message"]?["content"], "Four.")
        XCTAssertEqual(json["metadata"]?["k"], "v")
        XCTAssertEqual(json["usage"]?["total_tokens"], .int(7))
        XCTAssertEqual(json["latency_ms"], .double(12.346))
        XCTAssertEqual(json["feedback"]?[0]?["signal"], "score")
        XCTAssertEqual(json["error"], .null)
        XCTAssertNoThrow(try JSONParser.parse(json.serializedString()))
    }

    func testLineShowsIdStatusTokensAndSnippet() {
        let line = RecordFormatter.line(sampleRecord())
        for part in ["req-1", "m-2024", "upstream", "200", "12.3ms", "7tok", "\"What is 2+2?\"", "→ \"Four.\""] {
            XCTAssertTrue(line.contains(part), "\(part) missing in \(line)")
        }
        var failed = sampleRecord()
        failed.status = 502
        failed.errorMessage = "upstream down"
        XCTAssertTrue(RecordFormatter.line(failed).contains("error: upstream down"))
    }

    func testDetailAndFeedbackLine() {
        var f = FeedbackRecord(requestID: "req-1", createdAtMillis: 0, signal: .edited)
        f.correction = "4"
        let text = RecordFormatter.detail(sampleRecord(), feedback: [f])
        XCTAssertTrue(text.contains("m → served as m-2024"))
        XCTAssertTrue(text.contains("correction=\"4\""))
        XCTAssertTrue(text.contains("\"content\": \"Four.\""))
    }

    func testFlagsShowInLineDetailAndJSON() throws {
        var r = sampleRecord()
        XCTAssertFalse(RecordFormatter.line(r).contains("incomplete"))
        XCTAssertFalse(RecordFormatter.detail(r, feedback: []).contains("truncated"))
        XCTAssertEqual(RecordFormatter.json(r, feedback: [])["incomplete"], .bool(false))
        r.incomplete = true
        r.responseTruncated = true
        let line = RecordFormatter.line(r)
        XCTAssertTrue(line.contains("upstream incomplete truncated  200"), line)
        let detail = RecordFormatter.detail(r, feedback: [])
        XCTAssertTrue(detail.contains("incomplete      yes"), detail)
        XCTAssertTrue(detail.contains("truncated       yes"), detail)
        let json = RecordFormatter.json(r, feedback: [])
        XCTAssertEqual(json["incomplete"], .bool(true))
        XCTAssertEqual(json["response_truncated"], .bool(true))
    }

    func testLoggedControlCharactersCannotReachTheTerminal() throws {
        let hostile = TerminalTextTests.hostile
        var r = sampleRecord()
        r.id = "id-" + hostile
        r.modelServed = hostile
        r.route = hostile
        r.tags = [hostile]
        r.user = hostile
        r.metadataJSON = #"{"k":"\#(hostile)"}"#
        r.requestJSON = #"{"messages":[{"role":"user","content":"\#(hostile)\nline two"}]}"#
        r.responseJSON = "not json\nsecond line " + hostile
        var f = FeedbackRecord(requestID: r.id, createdAtMillis: 0, signal: .edited)
        f.comment = hostile
        f.correction = hostile
        f.source = hostile

        let line = RecordFormatter.line(r)
        TerminalTextTests.assertInert(line, allowNewlines: false)
        XCTAssertTrue(line.contains(#"id-a\e[2Jb\rc\ad\u{9b}31me\x7ff\u{202e}g"#), line)
        TerminalTextTests.assertInert(RecordFormatter.line(f), allowNewlines: false)

        var failed = r
        failed.errorMessage = hostile
        TerminalTextTests.assertInert(RecordFormatter.line(failed), allowNewlines: false)

        let detail = RecordFormatter.detail(failed, feedback: [f])
        TerminalTextTests.assertInert(detail, allowNewlines: true)
        XCTAssertTrue(detail.contains("not json\nsecond line a\\e[2J"), detail) // the raw body keeps its line break
        XCTAssertTrue(detail.contains(#"error           a\e[2J"#), detail)

        for text in [RecordFormatter.jsonLine(failed, feedback: [f]), RecordFormatter.jsonLine(f)] {
            TerminalTextTests.assertInert(text, allowNewlines: false)
            XCTAssertFalse(text.contains("\n"))
        }
        let decoded = try JSONParser.parse(RecordFormatter.jsonLine(failed, feedback: [f]))
        XCTAssertEqual(decoded["id"], .string(r.id))
        XCTAssertEqual(decoded["error"]?["message"], .string(hostile))
        XCTAssertEqual(decoded["feedback"]?[0]?["comment"], .string(hostile))
    }
}
