import XCTest
@testable import FlywheelTokenizer

final class ScoredPairMergerTests: XCTestCase {
    private func encode(_ tokens: [String], scores: [Float?], _ text: String) -> [String] {
        var byteTokens = [Int32](repeating: -1, count: 256)
        for (id, token) in tokens.enumerated() {
            if let byte = TokenizerVocabulary.byteValue(ofByteToken: token) { byteTokens[Int(byte)] = Int32(id) }
        }
        let merger = ScoredPairMerger(table: TokenTextTable(tokens), mergeScores: scores, byteTokens: byteTokens, unknownID: 0)
        var output: [Int32] = []
        merger.encode(Array(text.utf8), into: &output)
        return output.map { tokens[Int($0)] }
    }

    func testHighestScoringPairMergesFirst() {
        let tokens = ["<unk>", "a", "b", "c", "ab", "bc"]
        XCTAssertEqual(encode(tokens, scores: [nil, 0, 0, 0, -2, -1], "abc"), ["a", "bc"])
        XCTAssertEqual(encode(tokens, scores: [nil, 0, 0, 0, -1, -2], "abc"), ["ab", "c"])
    }

    func testControlTokensAreNeverFormedByMerging() {
        let tokens = ["<unk>", "<", "s", ">", "<s", "<s>"]
        XCTAssertEqual(encode(tokens, scores: [nil, 0, 0, 0, -1, nil], "<s>"), ["<s", ">"])
    }

    func testCharactersWithoutATokenFallBackToBytesOrUnknown() {
        let tokens = ["<unk>", "a", "<0xC3>", "<0xA9>"]
        XCTAssertEqual(encode(tokens, scores: [nil, 0, nil, nil], "aé"), ["a", "<0xC3>", "<0xA9>"])
        XCTAssertEqual(encode(tokens, scores: [nil, 0, nil, nil], "z"), ["<unk>"])
    }
}
