import XCTest
@testable import FlywheelTokenizer

final class PreTokenizerTests: XCTestCase {
    private func words(_ pre: PreTokenizer, _ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var start = 0
        return pre.split(scalars).map { end in
            defer { start = end }
            var word = String.UnicodeScalarView()
            word.append(contentsOf: scalars[start ..< end])
            return String(word)
        }
    }

    func testSplitsMatchReferenceRegexesOnEveryFixtureText() throws {
        for name in TokenizerFixture.byteLevelNames {
            let fixture = try TokenizerFixture.load(name)
            let pre = PreTokenizer(name: fixture.vocabulary.preTokenizerName)
            XCTAssertFalse(fixture.splits.isEmpty, name)
            for split in fixture.splits {
                XCTAssertEqual(words(pre, split.text), split.words, "\(name): \(split.text.debugDescription)")
            }
        }
    }

    func testNamesMapToTheirRegexFamilies() {
        XCTAssertEqual(PreTokenizer(name: "llama-bpe"), .llama3)
        XCTAssertEqual(PreTokenizer(name: "qwen2"), .qwen2)
        XCTAssertEqual(PreTokenizer(name: "smollm"), .gpt2IsolatedDigits)
        XCTAssertEqual(PreTokenizer(name: "starcoder"), .gpt2IsolatedDigits)
        XCTAssertEqual(PreTokenizer(name: "gpt-2"), .gpt2)
        XCTAssertEqual(PreTokenizer(name: "tekken"), .tekken)
        XCTAssertTrue(PreTokenizer.isRecognized("llama-bpe"))
    }

    func testUnknownOrMissingNameFallsBackToGPT2() {
        XCTAssertEqual(PreTokenizer(name: "deepseek-llm"), .gpt2)
        XCTAssertEqual(PreTokenizer(name: nil), .gpt2)
        XCTAssertFalse(PreTokenizer.isRecognized("deepseek-llm"))
        XCTAssertFalse(PreTokenizer.isRecognized(nil))
    }

    func testGPT2KeepsLastSpaceOfARunForTheNextWord() {
        XCTAssertEqual(words(.gpt2, "a   b"), ["a", "  ", " b"])
        XCTAssertEqual(words(.gpt2, "a \u{00A0}b"), ["a", " ", "\u{00A0}", "b"])
        XCTAssertEqual(words(.gpt2, "end  "), ["end", "  "])
        XCTAssertEqual(words(.gpt2, "it's IT'S"), ["it", "'s", " IT", "'", "S"])
    }

    func testLlama3GroupsDigitsInThreesAndQwen2SplitsEachDigit() {
        XCTAssertEqual(words(.llama3, "1234567"), ["123", "456", "7"])
        XCTAssertEqual(words(.qwen2, "123"), ["1", "2", "3"])
        XCTAssertEqual(words(.gpt2IsolatedDigits, "x 42"), ["x", " ", "4", "2"])
    }

    func testLlama3AttachesOnePunctuationToTheFollowingWordAndNewlinesToSymbols() {
        XCTAssertEqual(words(.llama3, "(hello) IT'S"), ["(hello", ")", " IT", "'S"])
        XCTAssertEqual(words(.llama3, "x;\n\ny"), ["x", ";\n\n", "y"])
        XCTAssertEqual(words(.llama3, "a \n  b"), ["a", " \n", " ", " b"])
    }

    func testTekkenSplitsAtCaseChangesAndKeepsAcronymsWithTheirWord() {
        XCTAssertEqual(words(.tekken, "HTTPServer HELLO world, it's"), ["HTTPServer", " HELLO", " world", ",", " it", "'s"])
        XCTAssertEqual(words(.tekken, "aB cD  /path/to"), ["a", "B", " c", "D", " ", " /", "path", "/to"])
        XCTAssertEqual(words(.tekken, "(Hello) 123"), ["(Hello", ")", " ", "1", "2", "3"])
    }
}
