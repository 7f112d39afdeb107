import XCTest
@testable import FlywheelTokenizer

final class TokenStreamDecoderTests: XCTestCase {
    private func stream(_ tokenizer: Tokenizer, _ ids: [Int32], skipSpecial: Bool = false,
                        asContinuation: Bool = false) -> (deltas: [String], text: String) {
        var decoder = TokenStreamDecoder(tokenizer: tokenizer, skipSpecial: skipSpecial, asContinuation: asContinuation)
        var deltas = ids.map { decoder.append($0) }
        deltas.append(decoder.finish())
        return (deltas, deltas.joined())
    }

    func testStreamedDeltasConcatenateToDecodeForEveryFixture() throws {
        for name in TokenizerFixture.names {
            let fixture = try TokenizerFixture.load(name)
            let tokenizer = Tokenizer(fixture.vocabulary)
            for c in fixture.cases {
                for skip in [false, true] {
                    for continuation in [false, true] {
                        XCTAssertEqual(
                            stream(tokenizer, c.ids, skipSpecial: skip, asContinuation: continuation).text,
                            tokenizer.decode(c.ids, skipSpecial: skip, asContinuation: continuation),
                            "\(name): \(c.text.debugDescription)")
                    }
                }
            }
        }
    }

    func testIncompleteUTF8IsHeldBackUntilTheCharacterCompletes() throws {
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        let bytes = ["<0xE9>", "<0xBE>", "<0x8D>"].compactMap { tokenizer.tokenID(forText: $0) }
        XCTAssertEqual(bytes.count, 3)
        let result = stream(tokenizer, bytes, asContinuation: true)
        XCTAssertEqual(result.deltas, ["", "", "龍", ""])
    }

    func testEveryDeltaIsValidTextWhenByteLevelTokensSplitCharacters() throws {
        let tokenizer = try TokenizerFixture.tokenizer("qwen2")
        let text = "emoji 😀🎉 👍🏽 ❤️ 中文 ok"
        let ids = tokenizer.encode(text, addSpecial: false)
        let result = stream(tokenizer, ids)
        XCTAssertEqual(result.text, text)
        XCTAssertFalse(result.deltas.contains { $0.contains("\u{FFFD}") })
    }

    func testUnfinishedSequenceAtTheEndDecodesAsReplacementCharacter() throws {
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        let ids = ["<0xE9>", "<0xBE>"].compactMap { tokenizer.tokenID(forText: $0) } + tokenizer.encode("a", addSpecial: false)
        let result = stream(tokenizer, ids, asContinuation: true)
        XCTAssertEqual(result.text, tokenizer.decode(ids, asContinuation: true))
        XCTAssertTrue(result.text.hasPrefix("\u{FFFD}"))
        var decoder = TokenStreamDecoder(tokenizer: tokenizer)
        XCTAssertEqual(decoder.append(ids[0]), "")
        XCTAssertEqual(decoder.finish(), "\u{FFFD}")
    }

    func testIncompleteSuffixLengthFollowsUTF8SecondByteRules() {
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0x61, 0xE4]), 1)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xE4, 0xB8]), 2)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xE4, 0xB8, 0xAD]), 0)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xF0, 0x9F, 0x98]), 3)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xED, 0xA0]), 0)  // would be a surrogate
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xE0, 0x80]), 0)  // overlong
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0xC0]), 0)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([0x80, 0x80, 0x80]), 0)
        XCTAssertEqual(TokenStreamDecoder.incompleteSuffixLength([]), 0)
    }

    func testRandomByteTokenStreamsMatchDecode() throws {
        // Random sequences of byte tokens: valid, truncated and invalid UTF-8 alike.
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        let byteIDs = (0 ..< 256).compactMap { tokenizer.tokenID(forText: String(format: "<0x%02X>", $0)) }
        XCTAssertEqual(byteIDs.count, 256)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0 ..< 300 {
            var ids: [Int32] = []
            for _ in 0 ..< 12 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                // Bias towards bytes that start or continue multi-byte sequences.
                let pick = Int(state >> 33) % 4 == 0 ? Int(state >> 40) % 128 : 0x80 + Int(state >> 40) % 0x78
                ids.append(byteIDs[pick])
            }
            XCTAssertEqual(stream(tokenizer, ids, asContinuation: true).text, tokenizer.decode(ids, asContinuation: true))
        }
    }
}
