import Foundation
import XCTest
@testable import FlywheelTokenizer

/// One checked-in vocabulary with reference results (made by scripts/engine/make_tokenizer_fixtures.py
/// from Hugging Face `tokenizers` and `sentencepiece`).
struct TokenizerFixture {
    struct Case {
        var text: String
        var parseSpecial: Bool
        var addSpecial: Bool
        var ids: [Int32]
        var decoded: String
        var decodedSkippingSpecial: String
    }

    struct Split {
        var text: String
        var words: [String]
    }

    static let names = ["gpt2", "llama3", "qwen2", "smollm", "tekken", "spm"]
    static let byteLevelNames = ["gpt2", "llama3", "qwen2", "smollm", "tekken"]

    var name: String
    var json: [String: Any]
    var vocabulary: TokenizerVocabulary
    var cases: [Case]
    var splits: [Split]

    static func load(_ name: String) throws -> TokenizerFixture {
        let url = try XCTUnwrap(
            Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"), "missing fixture \(name)")
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let vocabulary = try TokenizerVocabulary(
            model: try XCTUnwrap(json["model"] as? String),
            preTokenizerName: json["pre"] as? String,
            tokens: try XCTUnwrap(json["tokens"] as? [String]),
            scores: (json["scores"] as? [Double])?.map { Float($0) },
            tokenTypes: (json["token_type"] as? [Int])?.map { Int32($0) },
            merges: json["merges"] as? [String],
            bosID: json["bos_token_id"] as? Int,
            eosID: json["eos_token_id"] as? Int,
            eotID: json["eot_token_id"] as? Int,
            unknownID: json["unknown_token_id"] as? Int,
            addBOS: json["add_bos_token"] as? Bool,
            addEOS: json["add_eos_token"] as? Bool,
            addSpacePrefix: json["add_space_prefix"] as? Bool)
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]]).map { c in
            Case(text: c["text"] as? String ?? "", parseSpecial: c["parse_special"] as? Bool ?? false,
                 addSpecial: c["add_special"] as? Bool ?? false,
                 ids: (c["ids"] as? [Int] ?? []).map { Int32($0) },
                 decoded: c["decoded"] as? String ?? c["text"] as? String ?? "",
                 decodedSkippingSpecial: c["decoded_skip_special"] as? String ?? c["text"] as? String ?? "")
        }
        let splits = (json["splits"] as? [[String: Any]] ?? []).map { s in
            Split(text: s["text"] as? String ?? "", words: s["words"] as? [String] ?? [])
        }
        return TokenizerFixture(name: name, json: json, vocabulary: vocabulary, cases: cases, splits: splits)
    }

    /// A tokenizer for the fixture, built once per name (building is the slow part of a test).
    static func tokenizer(_ name: String) throws -> Tokenizer {
        try Tokenizer(load(name).vocabulary)
    }

    /// The raw JSON arrays, for building altered vocabularies in the validation tests.
    var tokens: [String] { json["tokens"] as? [String] ?? [] }
    var merges: [String] { json["merges"] as? [String] ?? [] }
    var tokenTypes: [Int32] { (json["token_type"] as? [Int] ?? []).map { Int32($0) } }
}
