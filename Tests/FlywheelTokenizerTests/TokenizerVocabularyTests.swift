import XCTest
@testable import FlywheelTokenizer

final class TokenizerVocabularyTests: XCTestCase {
    private func gpt2(
        tokens: [String] = ["a", "b", "ab", "<|end|>"], types: [Int32]? = [1, 1, 1, 3],
        merges: [String]? = ["a b"], eos: Int? = 3
    ) throws -> TokenizerVocabulary {
        try TokenizerVocabulary(model: "gpt2", tokens: tokens, tokenTypes: types, merges: merges, eosID: eos)
    }

    private func assertThrows(_ expected: TokenizerError, _ body: () throws -> TokenizerVocabulary,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            XCTAssertEqual(error as? TokenizerError, expected, file: file, line: line)
            XCTAssertFalse("\(error)".isEmpty)
        }
    }

    func testValidVocabularyKeepsEveryValue() throws {
        let vocabulary = try TokenizerVocabulary(
            model: "llama", tokens: ["<unk>", "<s>", "</s>", "<0x0A>", "\u{2581}a"], scores: [0, 0, 0, 0, -1],
            tokenTypes: [2, 3, 3, 6, 1], bosID: 1, eosID: 2, unknownID: 0, paddingID: 0,
            addBOS: true, addEOS: false, addSpacePrefix: true)
        XCTAssertEqual(vocabulary.model, .llama)
        XCTAssertEqual(vocabulary.tokenTypes, [.unknown, .control, .control, .byte, .normal])
        XCTAssertEqual(vocabulary.scores, [0, 0, 0, 0, -1])
        XCTAssertEqual(vocabulary.bosID, 1)
        XCTAssertEqual(vocabulary.paddingID, 0)
        XCTAssertEqual(vocabulary.addSpacePrefix, true)
        XCTAssertEqual(try gpt2().merges, ["a b"])
        XCTAssertEqual(try gpt2(types: nil).tokenTypes, [.normal, .normal, .normal, .normal])
    }

    func testAllFixturesAreValid() throws {
        for name in TokenizerFixture.names {
            XCTAssertNoThrow(try TokenizerFixture.load(name), name)
        }
    }

    func testUnknownModelIsRejected() {
        assertThrows(.unknownModel("bert")) { try TokenizerVocabulary(model: "bert", tokens: ["a"]) }
    }

    func testEmptyVocabularyIsRejected() {
        assertThrows(.emptyVocabulary) { try TokenizerVocabulary(model: "llama", tokens: []) }
    }

    func testArraysOfTheWrongLengthAreRejected() {
        assertThrows(.lengthMismatch(key: "tokenizer.ggml.scores", expected: 2, actual: 1)) {
            try TokenizerVocabulary(model: "llama", tokens: ["a", "b"], scores: [0])
        }
        assertThrows(.lengthMismatch(key: "tokenizer.ggml.token_type", expected: 4, actual: 3)) {
            try self.gpt2(types: [1, 1, 1])
        }
    }

    func testInvalidTokenTypeIsRejected() {
        assertThrows(.invalidTokenType(id: 2, value: 9)) { try self.gpt2(types: [1, 1, 9, 3]) }
    }

    func testDuplicateTokenTextIsRejected() {
        assertThrows(.duplicateToken(text: "a", firstID: 0, secondID: 3)) {
            try self.gpt2(tokens: ["a", "b", "ab", "a"], eos: nil)
        }
    }

    func testMissingOrMalformedMergesAreRejected() {
        assertThrows(.missingMerges) { try self.gpt2(merges: nil) }
        assertThrows(.malformedMerge(index: 0, text: "ab")) { try self.gpt2(merges: ["ab"]) }
        assertThrows(.malformedMerge(index: 1, text: "a ")) { try self.gpt2(merges: ["a b", "a "]) }
    }

    func testMergeNamingAMissingTokenIsRejected() {
        assertThrows(.mergeNamesMissingToken(index: 1, merge: "a c", token: "c")) { try self.gpt2(merges: ["a b", "a c"]) }
        assertThrows(.mergeNamesMissingToken(index: 0, merge: "b a", token: "ba")) { try self.gpt2(merges: ["b a"]) }
    }

    func testSpecialIdOutsideTheVocabularyIsRejected() {
        assertThrows(.specialTokenOutOfRange(key: "tokenizer.ggml.eos_token_id", id: 4, vocabularySize: 4)) {
            try self.gpt2(eos: 4)
        }
        assertThrows(.specialTokenOutOfRange(key: "tokenizer.ggml.bos_token_id", id: -1, vocabularySize: 1)) {
            try TokenizerVocabulary(model: "llama", tokens: ["a"], bosID: -1)
        }
    }

    func testOutOfRangePaddingAndEndOfTurnIdsAreIgnored() throws {
        let v = try TokenizerVocabulary(model: "llama", tokens: ["a", "b"], eotID: 9, unknownID: 5, paddingID: 7)
        XCTAssertNil(v.paddingID)
        XCTAssertNil(v.eotID)
        XCTAssertNil(v.unknownID)
    }

    func testByteTokenNotSpelledAsHexIsRejected() {
        assertThrows(.invalidByteToken(id: 1, text: "<0xZZ>")) {
            try TokenizerVocabulary(model: "llama", tokens: ["a", "<0xZZ>"], tokenTypes: [1, 6])
        }
    }

    func testMergeSplitsAtFirstSpaceAfterTheFirstCharacter() {
        XCTAssertEqual(TokenizerVocabulary.splitMerge("Ġ t").map { [$0.0, $0.1] }, ["Ġ", "t"])
        XCTAssertEqual(TokenizerVocabulary.splitMerge("  x").map { [$0.0, $0.1] }, [" ", "x"])
        XCTAssertNil(TokenizerVocabulary.splitMerge("ab"))
        XCTAssertEqual(TokenizerVocabulary.byteValue(ofByteToken: "<0x0A>"), 10)
        XCTAssertEqual(TokenizerVocabulary.byteValue(ofByteToken: "<0xff>"), 255)
        XCTAssertNil(TokenizerVocabulary.byteValue(ofByteToken: "<0x+A>"))
    }
}
