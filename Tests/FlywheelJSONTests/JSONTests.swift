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
        // Beyond Double's range: refused, not turned into infinity (which would be written back as null).
        XCTAssertThrowsError(try JSONParser.parse("1e400")) { XCTAssertTrue("\($0)".contains("out of range")) }
        XCTAssertThrowsError(try JSONParser.parse("[-1e999]"))
        XCTAssertEqual(try JSONParser.parse("1e308").doubleValue, 1e308)
    }

    func testDuplicateKeysCanBeRefusedNamingTheKey() throws {
        var strict = JSONParser.Limits()
        strict.rejectsDuplicateKeys = true
        XCTAssertThrowsError(try JSONParser.parse(#"{"model":"a","x":1,"model":"b"}"#, limits: strict)) {
            XCTAssertTrue("\($0)".contains(#"duplicate key "model""#), "\($0)")
        }
        XCTAssertThrowsError(try JSONParser.parse(#"{"m":{"k":1,"k":2}}"#, limits: strict))
        let many = "{" + (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k7\":0}"
        XCTAssertThrowsError(try JSONParser.parse(many, limits: strict)) { XCTAssertTrue("\($0)".contains("k7")) }
        // The default keeps the last value, as most parsers do.
        XCTAssertEqual(try JSONParser.parse(#"{"model":"a","model":"b"}"#)["model"], "b")
        XCTAssertNoThrow(try JSONParser.parse(#"{"a":1,"b":{"a":2}}"#, limits: strict))
    }

    func testObjectSubscriptSetReplacesRemovesAppends() {
        var o = JSONObject([("a", 1), ("b", 2)])
        o["a"] = 3
        o["c"] = 4
        o["b"] = nil
        XCTAssertEqual(JSON.object(o).serializedString(), #"{"a":3,"c":4}"#)
    }

    func testDuplicateKeysKeepTheFirstPositionAndTheLastValue() throws {
        let small = try JSONParser.parse(#"{"a":1,"b":2,"a":3}"#)
        XCTAssertEqual(small.serializedString(), #"{"a":3,"b":2}"#)
        // The same policy on the hashed path.
        let keys = (0..<40).map { "\"k\($0)\":\($0)" }.joined(separator: ",")
        let large = try JSONParser.parse("{" + keys + #","k0":"last","k39":null}"#)
        XCTAssertEqual(large.objectValue?.count, 40)
        XCTAssertEqual(large.objectValue?.keys.first, "k0")
        XCTAssertEqual(large["k0"], "last")
        XCTAssertEqual(large["k39"], .null)
        XCTAssertEqual(large["k20"], .int(20))
    }

    func testHundredThousandKeysParseIntoAnIndexedObject() throws {
        // Quadratic duplicate checks took 22 s here; with the hash index this is a fraction of a second.
        let count = 100_000
        var text = "{"
        for i in 0..<count { text += (i == 0 ? "" : ",") + "\"key\(i)\":\(i)" }
        text += "}"
        let object = try XCTUnwrap(JSONParser.parse(text).objectValue)
        XCTAssertEqual(object.count, count)
        XCTAssertTrue(object.isIndexed, "a large object must not be searched linearly")
        for i in stride(from: 0, to: count, by: 997) { XCTAssertEqual(object["key\(i)"], .int(Int64(i))) }
        XCTAssertNil(object["key\(count)"])
    }

    func testLargeObjectIndexFollowsEdits() {
        var o = JSONObject((0..<30).map { ("k\($0)", JSON.int(Int64($0))) })
        XCTAssertTrue(o.isIndexed)
        o["k3"] = nil
        XCTAssertNil(o["k3"])
        XCTAssertEqual(o["k4"], 4)
        XCTAssertEqual(o["k29"], 29)
        o["new"] = "x"
        XCTAssertEqual(o["new"], "x")
        XCTAssertEqual(o.keys.last, "new")
        o["k4"] = 40
        XCTAssertEqual(o.entries[3].value, 40, "replacing keeps the position")
        var small = JSONObject()
        for i in 0..<20 { small["s\(i)"] = .int(Int64(i)) }
        XCTAssertTrue(small.isIndexed, "an object that grows past the threshold gets an index")
        XCTAssertEqual(small["s17"], 17)
    }

    func testLimitsAreEnforcedAndNamed() {
        func limit(_ text: String, _ limits: JSONParser.Limits) -> JSONParser.Limit? {
            do {
                _ = try JSONParser.parse(text, limits: limits)
                return nil
            } catch {
                return error.limit
            }
        }
        XCTAssertEqual(limit(#"{"a":1,"b":{"c":2}}"#, JSONParser.Limits(maxObjectMembers: 2)), .maxObjectMembers)
        XCTAssertNil(limit(#"{"a":1,"b":{}}"#, JSONParser.Limits(maxObjectMembers: 2)))
        XCTAssertEqual(limit("[[1,2],[3]]", JSONParser.Limits(maxArrayElements: 4)), .maxArrayElements)
        XCTAssertNil(limit("[[1,2],3]", JSONParser.Limits(maxArrayElements: 4)))
        XCTAssertEqual(limit(#"["abcd"]"#, JSONParser.Limits(maxStringBytes: 3)), .maxStringBytes)
        XCTAssertEqual(limit(#"{"abcd":1}"#, JSONParser.Limits(maxStringBytes: 3)), .maxStringBytes)
        XCTAssertEqual(limit(#"["a\nbc"]"#, JSONParser.Limits(maxStringBytes: 3)), .maxStringBytes)
        XCTAssertNil(limit(#"["a\nb"]"#, JSONParser.Limits(maxStringBytes: 3)), "the unescaped length counts")
        XCTAssertEqual(limit("[[[]]]", JSONParser.Limits(maxDepth: 2)), .maxDepth)
        XCTAssertNil(limit("[1 2]", JSONParser.Limits()), "a syntax error names no limit")
        XCTAssertNil(limit("[" + Array(repeating: "0", count: 1_000_001).joined(separator: ",") + "]", .depthOnly))
        XCTAssertEqual(limit(String(repeating: "[", count: 300), .depthOnly), .maxDepth)

        // The default member limit: 100k members pass, one more is refused with a message naming it.
        let members = (0...100_000).map { "\"\($0)\":0" }.joined(separator: ",")
        XCTAssertThrowsError(try JSONParser.parse("{" + members + "}")) {
            let error = $0 as? JSONParseError
            XCTAssertEqual(error?.limit, .maxObjectMembers)
            XCTAssertTrue(error?.description.contains("max_object_members") == true, "\(String(describing: error))")
        }
    }
}
