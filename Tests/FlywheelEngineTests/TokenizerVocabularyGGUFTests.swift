import Foundation
import FlywheelEngine
import FlywheelTokenizer
import XCTest

/// Reading tokenizer metadata from GGUF (fixture made by scripts/engine/make_tokenizer_fixtures.py).
final class TokenizerVocabularyGGUFTests: XCTestCase {
    private func expected() throws -> [String: Any] {
        let data = try Data(contentsOf: GGUFFixture.url("tokenizer-gpt2.expected.json"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testReadsEveryTokenizerKeyFromGGUF() throws {
        let expected = try expected()
        let file = try GGUFFile(path: GGUFFixture.url("tokenizer-gpt2.gguf").path)
        let vocabulary = try TokenizerVocabulary(gguf: file)
        XCTAssertEqual(vocabulary.model, .gpt2)
        XCTAssertEqual(vocabulary.preTokenizerName, "qwen2")
        XCTAssertEqual(vocabulary.tokens.count, expected["token_count"] as? Int)
        XCTAssertEqual(Array(vocabulary.tokens.prefix(8)), expected["first_tokens"] as? [String])
        XCTAssertEqual(vocabulary.tokens.last, expected["last_token"] as? String)
        XCTAssertEqual(vocabulary.merges.count, expected["merge_count"] as? Int)
        XCTAssertEqual(Array(vocabulary.merges.prefix(4)), expected["first_merges"] as? [String])
        XCTAssertEqual(vocabulary.bosID.map(Int.init), expected["bos_token_id"] as? Int)
        XCTAssertEqual(vocabulary.eosID.map(Int.init), expected["eos_token_id"] as? Int)
        XCTAssertEqual(vocabulary.paddingID, vocabulary.bosID)
        XCTAssertNil(vocabulary.eotID)
        XCTAssertEqual(vocabulary.addBOS, false)
        XCTAssertEqual(vocabulary.addEOS, false)
        XCTAssertNil(vocabulary.addSpacePrefix)
        XCTAssertEqual(vocabulary.scores, [])
        let controls = vocabulary.tokenTypes.indices.filter { vocabulary.tokenTypes[$0] == .control }
        XCTAssertEqual(controls, expected["control_token_ids"] as? [Int])
    }

    func testTokenizerFromGGUFMatchesReferenceIds() throws {
        let cases = try XCTUnwrap(try expected()["cases"] as? [[String: Any]])
        XCTAssertFalse(cases.isEmpty)
        let tokenizer = Tokenizer(try TokenizerVocabulary(gguf: GGUFFile(path: GGUFFixture.url("tokenizer-gpt2.gguf").path)))
        for c in cases {
            let text = try XCTUnwrap(c["text"] as? String)
            let ids = try XCTUnwrap(c["ids"] as? [Int]).map { Int32($0) }
            XCTAssertEqual(tokenizer.encode(text, addSpecial: false, parseSpecial: c["parse_special"] as? Bool ?? false),
                           ids, text.debugDescription)
        }
    }

    /// A file with only `general.architecture` plus the given tokenizer entries.
    private func file(_ entries: (inout GGUFBuilder) -> Void, count: UInt64) throws -> GGUFFile {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: count + 1)
        b.kvString("general.architecture", "llama")
        entries(&b)
        return try GGUFFile(bytes: b.bytes)
    }

    private func stringArray(_ b: inout GGUFBuilder, _ key: String, _ values: [String]) {
        b.string(key)
        b.u32(9)  // array
        b.u32(8)  // of strings
        b.u64(UInt64(values.count))
        for v in values { b.string(v) }
    }

    func testMissingModelOrTokensIsReported() throws {
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: file({ _ in }, count: 0))) { error in
            XCTAssertEqual(error as? TokenizerError, .missingMetadata(key: "tokenizer.ggml.model"))
        }
        let noTokens = try file({ $0.kvString("tokenizer.ggml.model", "llama") }, count: 1)
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: noTokens)) { error in
            XCTAssertEqual(error as? TokenizerError, .missingMetadata(key: "tokenizer.ggml.tokens"))
        }
    }

    func testWronglyTypedKeyIsReported() throws {
        let numericModel = try file({ $0.kvU32("tokenizer.ggml.model", 1) }, count: 1)
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: numericModel)) { error in
            guard case .invalidMetadata(key: "tokenizer.ggml.model", _)? = error as? TokenizerError else {
                return XCTFail("\(error)")
            }
        }
        let stringBOS = try file({ b in
            b.kvString("tokenizer.ggml.model", "llama")
            self.stringArray(&b, "tokenizer.ggml.tokens", ["<unk>", "<s>"])
            b.kvString("tokenizer.ggml.bos_token_id", "1")
        }, count: 3)
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: stringBOS)) { error in
            guard case .invalidMetadata(key: "tokenizer.ggml.bos_token_id", _)? = error as? TokenizerError else {
                return XCTFail("\(error)")
            }
        }
    }

    func testVocabularyValidationErrorsPassThrough() throws {
        let unknownModel = try file({ b in
            b.kvString("tokenizer.ggml.model", "bert")
            self.stringArray(&b, "tokenizer.ggml.tokens", ["a"])
        }, count: 2)
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: unknownModel)) { error in
            XCTAssertEqual(error as? TokenizerError, .unknownModel("bert"))
        }
        let badEOS = try file({ b in
            b.kvString("tokenizer.ggml.model", "llama")
            self.stringArray(&b, "tokenizer.ggml.tokens", ["<unk>", "<s>"])
            b.kvU32("tokenizer.ggml.eos_token_id", 7)
        }, count: 3)
        XCTAssertThrowsError(try TokenizerVocabulary(gguf: badEOS)) { error in
            XCTAssertEqual(error as? TokenizerError,
                           .specialTokenOutOfRange(key: "tokenizer.ggml.eos_token_id", id: 7, vocabularySize: 2))
        }
    }
}
