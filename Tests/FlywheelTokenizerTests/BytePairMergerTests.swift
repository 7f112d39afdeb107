import XCTest
@testable import FlywheelTokenizer

final class BytePairMergerTests: XCTestCase {
    private let tokens = ["a", "b", "c", "ab", "bc", "abc", "aa", "aaaa"]

    private func merge(_ merges: [String], _ word: String) -> [String] {
        let table = TokenTextTable(tokens)
        let merger = BytePairMerger(merges: merges, table: table)
        var symbols = word.map { table.id(of: String($0)) ?? -1 }
        merger.merge(&symbols)
        return symbols.map { $0 >= 0 ? tokens[Int($0)] : "?" }
    }

    func testLowestRankMergesFirst() {
        XCTAssertEqual(merge(["b c", "a b", "a bc"], "abc"), ["abc"])
        XCTAssertEqual(merge(["a b", "b c"], "abc"), ["ab", "c"])
    }

    func testEqualRanksMergeLeftmostFirst() {
        XCTAssertEqual(merge(["a a", "aa aa"], "aaaaa"), ["aaaa", "a"])
        XCTAssertEqual(merge(["a a"], "aaa"), ["aa", "a"])
    }

    func testBytesMissingFromTheVocabularyNeverMerge() {
        XCTAssertEqual(merge(["a b"], "axb"), ["a", "?", "b"])
    }

    func testLongWordMergesCompletely() {
        let word = String(repeating: "a", count: 4096)
        XCTAssertEqual(merge(["a a", "aa aa"], word), Array(repeating: "aaaa", count: 1024))
    }
}
