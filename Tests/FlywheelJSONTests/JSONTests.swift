import XCTest
@testable import FlywheelJSON

final class JSONTests: XCTestCase {
    func testParsesNestedDocumentKeepingKeyOrder() throws {
        let v = try JSONParser.parse(#"{"z":1,"a":[true,false,null,-2.5e1,"x"],"m":{"k":"v"}}"#)
        XCTAssertEqual(v.objectValue?.keys, ["z", "a", "m"])
        XCTAssertEqual(v["z"], .int(1))
        XCTAssertEqual(v["a"]?[3], .double(-25))
        XCTAssertEqual(v["m"]?["k"]?.stringValue, "v")
    }

    func testRoundTripsEscapesAndUnicode() throws {
        let text = #"{"s":"a\"b\\c\nd\u0001é😀\ud83d\ude00"}"#
        let v = try JSONParser.parse(text)
        XCTAssertEqual(v["s"]?.stringValue, "a\"b\\c\nd\u{1}é😀😀")
        XCTAssertEqual(try JSONParser.parse(v.serializedString()), v)
        XCTAssertEqual(v.serializedString(), #"{"s":"a\"b\\c\nd\u0001é😀😀"}"#)
    }

    func testRejectsMalformedInputWithOffset() {
        for bad in ["", "{", "{\"a\":}", "[1,]", "01", "1.", "\"abc", "tru", "{\"a\" 1}", "[1] x", "\"\\ud800\"", "\"\u{1}\"", "-", "{'a':1}"] {
            XCTAssertThrowsError(try JSONParser.parse(bad), "accepted \(bad)")
        }
        do {
            _ = try JSONParser.parse("[1, 2, ?]")
            XCTFail("accepted")
        } catch {
            XCTAssertEqual(error.offset, 7)
        }
    }

    func testRejectsExcessiveNestingWithoutCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        XCTAssertThrowsError(try JSONParser.parse(deep))
        let ok = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        XCTAssertNoThrow(try JSONParser.parse(ok))
    }

    func testRejectsInvalidUTF8() {
        XCTAssertThrowsError(try JSONParser.parse([0x22, 0xFF, 0xFE, 0x22]))
    }

    func testNumbersKeepIntegerness() throws {
        XCTAssertEqual(try JSONParser.parse("9007199254740993"), .int(9007199254740993))
        XCTAssertEqual(try JSONParser.parse("1.5"), .double(1.5))
        XCTAssertEqual(JSON.double(3).serializedString(), "3")
        XCTAssertEqual(JSON.double(.nan).serializedString(), "null")
        XCTAssertEqual(try JSONParser.parse("1e400").doubleValue, .infinity)
    }

    func testObjectSubscriptSetReplacesRemovesAppends() {
        var o = JSONObject([("a", 1), ("b", 2)])
        o["a"] = 3
        o["c"] = 4
        o["b"] = nil
        XCTAssertEqual(JSON.object(o).serializedString(), #"{"a":3,"c":4}"#)
    }
}
