import XCTest
@testable import FlywheelChatTemplate

final class ChatTemplateObjectTests: XCTestCase {
    func testKeysKeepInsertionOrderAndUpdatesKeepPosition() {
        var object = ChatTemplateObject()
        object["b"] = 1
        object["a"] = 2
        object["b"] = 3
        XCTAssertEqual(object.keys, ["b", "a"])
        XCTAssertEqual(object["b"], 3)
    }

    func testSettingNilRemovesTheKey() {
        var object = ChatTemplateObject([("x", 1), ("y", 2)])
        object["x"] = nil
        XCTAssertEqual(object.keys, ["y"])
        XCTAssertEqual(object.count, 1)
        XCTAssertNil(object["x"])
    }

    func testEqualityIgnoresOrderLikePythonDicts() {
        XCTAssertEqual(ChatTemplateObject([("a", 1), ("b", 2)]), ChatTemplateObject([("b", 2), ("a", 1)]))
        XCTAssertNotEqual(ChatTemplateObject([("a", 1)]), ChatTemplateObject([("a", 2)]))
    }
}
