import Foundation
import Synchronization
import XCTest
@testable import FlywheelTokenizer

final class TokenizerTests: XCTestCase {
    func testEncodeMatchesReferenceIdsForEveryFixtureString() throws {
        for name in TokenizerFixture.names {
            let fixture = try TokenizerFixture.load(name)
            let tokenizer = Tokenizer(fixture.vocabulary)
            XCTAssertFalse(fixture.cases.isEmpty, name)
            for c in fixture.cases {
                let ids = tokenizer.encode(c.text, addSpecial: c.addSpecial, parseSpecial: c.parseSpecial)
                XCTAssertEqual(ids, c.ids, "\(name): \(c.text.debugDescription) special=\(c.parseSpecial) add=\(c.addSpecial)")
            }
        }
    }

    func testDecodeMatchesReferenceText() throws {
        for name in TokenizerFixture.names {
            let fixture = try TokenizerFixture.load(name)
            let tokenizer = Tokenizer(fixture.vocabulary)
            for c in fixture.cases {
                XCTAssertEqual(tokenizer.decode(c.ids, skipSpecial: true), c.decodedSkippingSpecial,
                               "\(name): \(c.text.debugDescription)")
                // SentencePiece's decode drops control tokens even when asked to keep them; compare kept-special
                // text with the byte-level reference only.
                if name != "spm" {
                    XCTAssertEqual(tokenizer.decode(c.ids), c.decoded, "\(name): \(c.text.debugDescription)")
                }
            }
        }
    }

    func testDecodeOfEncodeRoundTripsEveryFixtureString() throws {
        let extra = ["  two leading", "trailing  ", "\u{00A0}nbsp\u{3000}ideographic space", "ａｂｃ full width",
                     "mixed😀emoji中文text", "tabs\t\t\tand\r\n\r\nnewlines", "<|im_start|> literal"]
        for name in TokenizerFixture.names {
            let fixture = try TokenizerFixture.load(name)
            let tokenizer = Tokenizer(fixture.vocabulary)
            for text in fixture.cases.map(\.text) + extra {
                for parseSpecial in [false, true] {
                    let ids = tokenizer.encode(text, addSpecial: false, parseSpecial: parseSpecial)
                    let decoded = tokenizer.decode(ids)
                    if name == "spm", parseSpecial, text.contains("<|") { continue }  // prefix spaces after specials
                    XCTAssertEqual(decoded, text, "\(name): \(text.debugDescription)")
                }
            }
        }
    }

    func testAddSpecialFollowsVocabularyFlags() throws {
        let llama3 = try TokenizerFixture.tokenizer("llama3")
        XCTAssertTrue(llama3.addsBOS)
        XCTAssertFalse(llama3.addsEOS)
        let bos = try XCTUnwrap(llama3.bosID)
        XCTAssertEqual(llama3.encode("hi").first, bos)
        XCTAssertEqual(llama3.encode("hi", addSpecial: false).first.map { $0 == bos }, false)
        XCTAssertEqual(llama3.encode("", addSpecial: true), [bos])

        let gpt2 = try TokenizerFixture.tokenizer("gpt2")
        XCTAssertFalse(gpt2.addsBOS)
        XCTAssertTrue(gpt2.addsEOS)
        XCTAssertEqual(gpt2.encode("hi").last, gpt2.eosID)
        XCTAssertEqual(gpt2.encode("", addSpecial: false), [])

        let qwen2 = try TokenizerFixture.tokenizer("qwen2")
        XCTAssertEqual(qwen2.encode("hi", addSpecial: true), qwen2.encode("hi", addSpecial: false))
    }

    func testParseSpecialTurnsControlTokenTextIntoIds() throws {
        let tokenizer = try TokenizerFixture.tokenizer("qwen2")
        let start = try XCTUnwrap(tokenizer.tokenID(forText: "<|im_start|>"))
        let end = try XCTUnwrap(tokenizer.tokenID(forText: "<|im_end|>"))
        let parsed = tokenizer.encode("<|im_start|>user\nhi<|im_end|>", addSpecial: false, parseSpecial: true)
        XCTAssertEqual(parsed.first, start)
        XCTAssertEqual(parsed.last, end)
        let literal = tokenizer.encode("<|im_start|>user\nhi<|im_end|>", addSpecial: false, parseSpecial: false)
        XCTAssertFalse(literal.contains(start))
        XCTAssertFalse(literal.contains(end))
        XCTAssertEqual(tokenizer.decode(literal), tokenizer.decode(parsed))
        XCTAssertEqual(tokenizer.decode(parsed, skipSpecial: true), "user\nhi")
    }

    func testUserDefinedTokensAreAlwaysMatchedAndKeptWhenSkippingSpecial() throws {
        let tokenizer = try TokenizerFixture.tokenizer("gpt2")
        let tool = try XCTUnwrap(tokenizer.tokenID(forText: "<tool>"))
        XCTAssertEqual(tokenizer.tokenType(tool), .userDefined)
        let ids = tokenizer.encode("a<tool>b", addSpecial: false, parseSpecial: false)
        XCTAssertTrue(ids.contains(tool))
        XCTAssertEqual(tokenizer.decode(ids, skipSpecial: true), "a<tool>b")
    }

    func testEndOfGenerationCoversEosEotAndEndOfTurnNames() throws {
        let llama3 = try TokenizerFixture.tokenizer("llama3")
        for text in ["<|end_of_text|>", "<|eot_id|>", "<|im_end|>", "<|endoftext|>"] {
            XCTAssertTrue(llama3.isEndOfGeneration(try XCTUnwrap(llama3.tokenID(forText: text))), text)
        }
        XCTAssertFalse(llama3.isEndOfGeneration(try XCTUnwrap(llama3.tokenID(forText: "<|im_start|>"))))
        XCTAssertFalse(llama3.isEndOfGeneration(try XCTUnwrap(llama3.bosID)))
        XCTAssertFalse(llama3.isEndOfGeneration(try XCTUnwrap(llama3.tokenID(forText: "a"))))

        let spm = try TokenizerFixture.tokenizer("spm")
        XCTAssertEqual(spm.endOfGenerationIDs, [2])
    }

    func testEndOfTurnNamedNormalTokenIsTreatedAsControl() throws {
        let vocabulary = try TokenizerVocabulary(
            model: "gpt2", tokens: ["a", "b", "ab", "<|im_end|>"], tokenTypes: [1, 1, 1, 1], merges: ["a b"])
        let tokenizer = Tokenizer(vocabulary)
        XCTAssertTrue(tokenizer.isEndOfGeneration(3))
        XCTAssertEqual(tokenizer.tokenType(3), .control)
        XCTAssertEqual(tokenizer.encode("ab<|im_end|>", addSpecial: false, parseSpecial: true), [2, 3])
        XCTAssertEqual(tokenizer.decode([2, 3], skipSpecial: true), "ab")
    }

    func testByteFallbackEncodesCharactersOutsideTheVocabulary() throws {
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        // U+9F8D is not in the tiny vocabulary; its UTF-8 is E9 BE 8D. (The reference cases with accents,
        // CJK and emoji also go through byte fallback.)
        XCTAssertNil(tokenizer.tokenID(forText: "龍"))
        let ids = tokenizer.encode("龍", addSpecial: false)
        let texts = ids.compactMap { tokenizer.tokenText($0) }
        XCTAssertEqual(Array(texts.suffix(3)), ["<0xE9>", "<0xBE>", "<0x8D>"])
        XCTAssertEqual(tokenizer.decode(ids), "龍")
        XCTAssertTrue(ids.allSatisfy { tokenizer.tokenType($0) == .byte || tokenizer.tokenText($0)?.contains("\u{2581}") == true })
    }

    func testSentencePieceDropsPrefixSpaceOnlyAtTheStartOfText() throws {
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        XCTAssertTrue(tokenizer.addsSpacePrefix)
        let ids = tokenizer.encode("the dog", addSpecial: false)
        XCTAssertEqual(tokenizer.tokenText(ids[0])?.hasPrefix("\u{2581}"), true)
        XCTAssertEqual(tokenizer.decode(ids), "the dog")
        XCTAssertEqual(tokenizer.decode(ids, asContinuation: true), " the dog")
        let withBOS = tokenizer.encode("the dog")
        XCTAssertEqual(withBOS.first, 1)
        XCTAssertEqual(tokenizer.decode(withBOS, skipSpecial: true), "the dog")
        XCTAssertEqual(tokenizer.decode(withBOS), "<s> the dog")
    }

    func testSentencePieceAddsPrefixSpaceAfterSpecialTokensLikeLlamaCpp() throws {
        let tokenizer = try TokenizerFixture.tokenizer("spm")
        let ids = tokenizer.encode("hi</s>the", addSpecial: false, parseSpecial: true)
        let eos = try XCTUnwrap(ids.firstIndex(of: 2))
        XCTAssertEqual(Array(ids[..<eos]), tokenizer.encode("hi", addSpecial: false))
        XCTAssertEqual(Array(ids[(eos + 1)...]), tokenizer.encode("the", addSpecial: false))
    }

    func testDecodeIgnoresOutOfRangeIds() throws {
        let tokenizer = try TokenizerFixture.tokenizer("qwen2")
        let ids = tokenizer.encode("ok", addSpecial: false)
        XCTAssertEqual(tokenizer.decode([-1] + ids + [Int32(tokenizer.vocabularySize), Int32.max]), "ok")
        XCTAssertNil(tokenizer.tokenText(-1))
        XCTAssertNil(tokenizer.tokenText(Int32(tokenizer.vocabularySize)))
    }

    func testLongInputsEncodeCorrectlyAndQuickly() throws {
        // 20k characters of mixed text, including one 5k-character "word" (worst case for merging).
        var text = ""
        let fixture = try TokenizerFixture.load("llama3")
        while text.count < 15_000 {
            for c in fixture.cases where !c.parseSpecial { text += c.text + "\n" }
        }
        text += String(repeating: "abcé", count: 1250)
        XCTAssertGreaterThanOrEqual(text.count, 20_000)
        for name in ["llama3", "spm"] {
            let tokenizer = try TokenizerFixture.tokenizer(name)
            let started = ContinuousClock.now
            let ids = tokenizer.encode(text, addSpecial: false)
            let elapsed = ContinuousClock.now - started
            XCTAssertEqual(tokenizer.decode(ids), text)
            print("encode \(name): \(text.count) characters -> \(ids.count) tokens in \(elapsed)")
        }
    }

    func testWithoutSpacePrefixSentencePieceEncodesTextAsGiven() throws {
        let fixture = try TokenizerFixture.load("spm")
        let v = fixture.vocabulary
        let noPrefix = Tokenizer(try TokenizerVocabulary(
            model: "llama", tokens: v.tokens, scores: v.scores, tokenTypes: v.tokenTypes.map(\.rawValue),
            bosID: 1, eosID: 2, unknownID: 0, addBOS: false, addSpacePrefix: false))
        let withPrefix = Tokenizer(v)
        XCTAssertFalse(noPrefix.addsSpacePrefix)
        XCTAssertFalse(noPrefix.addsBOS)
        for text in ["the dog", "Hello world", "café 中"] {
            XCTAssertEqual(noPrefix.encode(" " + text), withPrefix.encode(text, addSpecial: false), text)
            XCTAssertEqual(noPrefix.decode(noPrefix.encode(text)), text)
        }
    }

    func testConcurrentEncodingGivesTheSameIdsAsSerialEncoding() throws {
        let fixture = try TokenizerFixture.load("llama3")
        let tokenizer = Tokenizer(fixture.vocabulary)
        let texts = fixture.cases.map(\.text)
        let serial = texts.map { tokenizer.encode($0, addSpecial: false) }
        let results = Mutex([[Int32]?](repeating: nil, count: texts.count * 4))
        DispatchQueue.concurrentPerform(iterations: texts.count * 4) { i in
            let ids = tokenizer.encode(texts[i % texts.count], addSpecial: false)
            results.withLock { $0[i] = ids }
        }
        let parallel = results.withLock { $0 }
        for i in parallel.indices {
            XCTAssertEqual(parallel[i], serial[i % texts.count])
        }
    }
}
