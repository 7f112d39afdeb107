import XCTest
import FlywheelJSON
@testable import FlywheelLoop

final class NearDuplicateIndexTests: XCTestCase {
    static let vocabulary = (0..<5_000).map { "w\($0)" }

    func words(_ count: Int, _ rng: inout SeededRandom) -> [String] {
        (0..<count).map { _ in Self.vocabulary.randomElement(using: &rng)! }
    }

    func text(_ words: [String]) -> [UInt8] { Array(words.joined(separator: " ").utf8) }

    /// Jaccard similarity of two word lists' 5-gram sets, as the index defines them.
    func jaccard(_ a: [String], _ b: [String]) -> Double {
        func shingles(_ w: [String]) -> Set<String> {
            Set((0...(w.count - 5)).map { w[$0..<$0 + 5].joined(separator: " ") })
        }
        let x = shingles(a), y = shingles(b)
        return Double(x.intersection(y).count) / Double(x.union(y).count)
    }

    func testTheDefaultThresholdBandsAndTheirMidpoint() {
        let (b, r) = NearDuplicateIndex.banding(for: 0.8)
        XCTAssertEqual(b * r <= NearDuplicateIndex.hashCount, true)
        XCTAssertEqual(b, 7)
        XCTAssertEqual(r, 9)
        XCTAssertEqual(NearDuplicateIndex.midpoint(bands: b, rows: r), 0.806, accuracy: 0.001)
        let strict = NearDuplicateIndex.banding(for: 0.95)
        XCTAssertGreaterThan(NearDuplicateIndex.midpoint(bands: strict.bands, rows: strict.rows), 0.93)
    }

    func testSameTextAndCaseOrPunctuationChangesAreDuplicates() {
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 1 << 20)
        let a = "The printer on floor 3 is on fire; please send someone from facilities before it spreads to the paper store."
        XCTAssertEqual(index.isDuplicate(Array(a.utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array(a.utf8)), true)
        XCTAssertEqual(index.isDuplicate(Array(a.uppercased().replacingOccurrences(of: ";", with: " --").utf8)), true)
        XCTAssertEqual(index.indexed, 1)
    }

    func testShortTextsThatDifferAreNotDuplicates() {
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 1 << 20)
        XCTAssertEqual(index.isDuplicate(Array("What is 2+2?".utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array("What is 3+3?".utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array("route ticket: printer on fire".utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array("route ticket: cannot log in".utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array("What is 2+2?".utf8)), true)
    }

    func testATextWithoutWordsIsLeftToTheExactCheck() {
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 1 << 20)
        XCTAssertNil(index.isDuplicate([]))
        XCTAssertNil(index.isDuplicate(Array(" ?! -- ... \n".utf8)))
        XCTAssertEqual(index.indexed, 0)
    }

    func testUTF8WordsAreKeptWhole() {
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 1 << 20)
        XCTAssertEqual(index.isDuplicate(Array("привет мир это тест".utf8)), false)
        XCTAssertEqual(index.isDuplicate(Array("привет мир это тест".utf8)), true)
        XCTAssertEqual(index.isDuplicate(Array("привет мир это квест".utf8)), false)
    }

    /// Pairs of 100-word texts at known Jaccard similarities. A pair is caught when a band agrees (the S-curve
    /// `1 - (1 - s^9)^7`: 0.97 at 0.9, 0.46 at 0.76) and the similarity estimated from the signatures reaches the
    /// threshold (64 hashes: a standard error of about 0.05). Seeded, so the counts are the same every run; the
    /// bounds leave room for 200 trials' sampling error.
    func testDetectionFollowsTheThreshold() {
        var rng = SeededRandom(seed: 42)
        let trials = 200
        // Replacing k spread-out words of 100 changes 5k of the 96 shingles: J = (96 - 5k) / (96 + 5k).
        for (k, low, high) in [(1, 0.9, 1.0), (3, 0.0, 0.3), (5, 0.0, 0.02), (12, 0.0, 0.0)] {
            var caught = 0
            var similarity = 0.0
            for _ in 0..<trials {
                var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 1 << 20)
                let a = words(100, &rng)
                var other = a
                for j in 0..<k { other[(j * 100 / k + 2) % 100] = "x\(rng.next() % 1_000_000)" }
                similarity += jaccard(a, other) / Double(trials)
                XCTAssertEqual(index.isDuplicate(text(a)), false)
                if index.isDuplicate(text(other)) == true { caught += 1 }
            }
            let rate = Double(caught) / Double(trials)
            XCTAssertTrue((low...high).contains(rate), "k=\(k): J=\(similarity), caught \(rate), expected \(low)...\(high)")
        }
    }

    /// Templated traffic: 1,500 texts that share most of their words (each pair at a Jaccard similarity of about
    /// 0.6). Every text has a candidate by chance somewhere among so many neighbours; the signature check keeps
    /// nearly all of them.
    func testTemplatedTextsBelowTheThresholdAreKept() {
        var rng = SeededRandom(seed: 11)
        let template = words(60, &rng)
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 8 << 20)
        var dropped = 0
        var texts: [[String]] = []
        for _ in 0..<1_500 {
            var t = template
            for position in [12, 30, 48] { t[position] = "v\(rng.next() % 1_000_000)" }
            if texts.count < 2 { texts.append(t) }
            if index.isDuplicate(text(t)) == true { dropped += 1 }
        }
        let j = jaccard(texts[0], texts[1])
        XCTAssertTrue((0.5...0.7).contains(j), "J=\(j)")
        XCTAssertLessThanOrEqual(dropped, 30, "J=\(j)")
    }

    /// Many unrelated texts in one index: none is taken for a duplicate of another.
    func testUnrelatedTextsAreKept() {
        var rng = SeededRandom(seed: 7)
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: 8 << 20)
        var falsePositives = 0
        for _ in 0..<2_000 where index.isDuplicate(text(words(20, &rng))) == true { falsePositives += 1 }
        XCTAssertEqual(falsePositives, 0)
        XCTAssertEqual(index.indexed, 2_000)
        XCTAssertNil(index.fullAfter)
    }

    func testAFullIndexStillChecksButStopsGrowing() throws {
        var rng = SeededRandom(seed: 9)
        let limit = (1 << 16) * 6   // the smallest table the index allows
        var index = NearDuplicateIndex(threshold: 0.8, memoryLimit: limit)
        let first = words(8, &rng)
        XCTAssertEqual(index.isDuplicate(text(first)), false)
        for _ in 0..<8_000 { _ = index.isDuplicate(text(words(8, &rng))) }
        let full = try XCTUnwrap(index.fullAfter)
        XCTAssertLessThan(full, 8_000)
        XCTAssertEqual(index.indexed, full)
        XCTAssertLessThanOrEqual(index.memoryUsed, limit)
        XCTAssertEqual(index.isDuplicate(text(first)), true, "what was indexed before it filled is still found")
    }

    func testTheConversationTextLeavesOutSystemPromptsToolsAndIds() throws {
        let line = try JSONParser.parse("""
            {"messages": [{"role": "system", "content": "SYSTEMPROMPT"},
                          {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
                          {"role": "assistant", "content": null, "tool_calls": [{"id": "call_RANDOM", "type": "function",
                              "function": {"name": "lookup", "arguments": "{\\"q\\": 1}"}}]}],
             "tools": [{"type": "function", "function": {"name": "TOOLDEF"}}], "flywheel_request_id": "REQID"}
            """)
        var bytes: [UInt8] = []
        DatasetExporter.conversationText(line, into: &bytes)
        let text = String(decoding: bytes, as: UTF8.self)
        for kept in ["hello there", "lookup", "\"q\": 1"] { XCTAssertTrue(text.contains(kept), text) }
        for left in ["SYSTEMPROMPT", "call_RANDOM", "TOOLDEF", "REQID", "assistant", "function"] {
            XCTAssertFalse(text.contains(left), "\(left) in \(text)")
        }
    }
}
