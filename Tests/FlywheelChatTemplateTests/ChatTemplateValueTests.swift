import XCTest
@testable import FlywheelChatTemplate

final class ChatTemplateValueTests: XCTestCase {
    func testLiteralsBuildValuesWithOrderedKeys() {
        let value: ChatTemplateValue = ["z": 1, "a": [true, nil, 2.5, "s"]]
        guard case let .object(object) = value else { return XCTFail() }
        XCTAssertEqual(object.keys, ["z", "a"])
        XCTAssertEqual(object["a"], .array([.bool(true), .none, .double(2.5), .string("s")]))
    }

    func testPythonFloatRepr() {
        XCTAssertEqual(PythonString.floatRepr(1), "1.0")
        XCTAssertEqual(PythonString.floatRepr(0.1), "0.1")
        XCTAssertEqual(PythonString.floatRepr(1e15), "1000000000000000.0")
        XCTAssertEqual(PythonString.floatRepr(1e16), "1e+16")
        XCTAssertEqual(PythonString.floatRepr(1.5e-5), "1.5e-05")
        XCTAssertEqual(PythonString.floatRepr(0.0001), "0.0001")
        XCTAssertEqual(PythonString.floatRepr(-2.5e300), "-2.5e+300")
        XCTAssertEqual(PythonString.floatRepr(123456.789), "123456.789")
        XCTAssertEqual(PythonString.floatRepr(-0.0), "-0.0")
    }

    func testPythonReprOfStringsListsAndDicts() {
        XCTAssertEqual(PythonString.repr("it's"), "\"it's\"")
        XCTAssertEqual(PythonString.repr("a'b\"c\n\u{01}"), "'a\\'b\"c\\n\\x01'")
        let value: ChatTemplateValue = ["k": [1, "v", nil, true]]
        XCTAssertEqual(value.pythonString, "{'k': [1, 'v', None, True]}")
    }

    func testPythonEqualityAcrossNumberKindsAndKeyOrder() {
        XCTAssertTrue(ChatTemplateValue.int(1).pythonEquals(.double(1)))
        XCTAssertTrue(ChatTemplateValue.bool(true).pythonEquals(.int(1)))
        let ab: ChatTemplateValue = ["a": 1, "b": 2]
        XCTAssertTrue(ab.pythonEquals(["b": 2, "a": 1]))
        XCTAssertFalse(ChatTemplateValue.none.pythonEquals(.bool(false)))
        XCTAssertFalse(ChatTemplateValue.undefined.pythonEquals(.none))
    }

    func testJSONWriterMatchesPythonDumps() throws {
        let value: ChatTemplateValue = ["a": [1, 2.5, nil], "b": [:], "c": "é\n"]
        XCTAssertEqual(try value.jsonString(), #"{"a": [1, 2.5, null], "b": {}, "c": "é\n"}"#)
        XCTAssertEqual(try value.jsonString(ensureASCII: true, separators: (",", ":")), #"{"a":[1,2.5,null],"b":{},"c":"\u00e9\n"}"#)
        let nested: ChatTemplateValue = ["x": [1]]
        XCTAssertEqual(try nested.jsonString(indent: "  "), "{\n  \"x\": [\n    1\n  ]\n}")
        XCTAssertThrowsError(try ChatTemplateValue.undefined.jsonString())
    }
}
