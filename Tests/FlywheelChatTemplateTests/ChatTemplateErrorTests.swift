import XCTest
@testable import FlywheelChatTemplate

final class ChatTemplateErrorTests: XCTestCase {
    func testDescriptionsNameWhatAndWhere() {
        XCTAssertEqual("\(ChatTemplateError.syntax(message: "unexpected 'endif'", line: 4, column: 2))",
                       "chat template syntax error at line 4, column 2: unexpected 'endif'")
        XCTAssertEqual("\(ChatTemplateError.unsupported(what: "filter 'foo'", line: 3))", "unsupported filter 'foo' at line 3")
        XCTAssertEqual("\(ChatTemplateError.templateRaised("Only user and assistant roles are supported!"))",
                       "chat template raised: Only user and assistant roles are supported!")
        XCTAssertEqual("\(ChatTemplateError.runtime(message: "division by zero", line: 7))",
                       "chat template error at line 7: division by zero")
    }
}
