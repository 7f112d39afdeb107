import XCTest
@testable import FlywheelChatTemplate

final class TemplateLexerTests: XCTestCase {
    private func kinds(_ source: String) throws -> [TemplateToken.Kind] {
        var lexer = TemplateLexer(source: source)
        return try lexer.tokenize().map(\.kind)
    }

    private func texts(_ source: String) throws -> [String] {
        try kinds(source).compactMap { if case let .text(text) = $0 { return text } else { return nil } }
    }

    func testTrimBlocksDropsOneNewlineAfterBlockTagsOnly() throws {
        XCTAssertEqual(try texts("{% if x %}\n\na{% endif %}\n{{ y }}\nb"), ["\na", "\nb"])
    }

    func testLstripBlocksDropsIndentBeforeBlockAndCommentTags() throws {
        XCTAssertEqual(try texts("a\n    {% if x %}b\n\t{# c #}d"), ["a\n", "b\n", "d"])
    }

    func testLstripLeavesIndentWhenTextPrecedesTagOnTheLine() throws {
        XCTAssertEqual(try texts("a  {% if x %}"), ["a  "])
    }

    func testVariableTagsAreNotLstripped() throws {
        XCTAssertEqual(try texts("a\n  {{ x }}"), ["a\n  "])
    }

    func testMinusStripsAllWhitespaceOnItsSide() throws {
        XCTAssertEqual(try texts("a \n\t{{- x -}} \n b"), ["a", "b"])
        XCTAssertEqual(try texts("a \n {%- if x -%}\n\n b{% endif %}"), ["a", "b"])
    }

    func testPlusDisablesLstripAndTrim() throws {
        XCTAssertEqual(try texts("a\n  {%+ if x +%}\nb{% endif %}"), ["a\n  ", "\nb"])
    }

    func testCommentsProduceNoTokens() throws {
        XCTAssertEqual(try kinds("a{# {{ not a tag }} #}b"), [.text("a"), .text("b"), .end])
    }

    func testOneTrailingNewlineAndCarriageReturnsAreNormalized() throws {
        XCTAssertEqual(try texts("a\r\nb\rc\n\n"), ["a\nb\nc\n"])
    }

    func testExpressionTokens() throws {
        XCTAssertEqual(try kinds("{{ a.b[1:] | x(y=2.5) ~ 'q' // 3 }}"), [
            .variableBegin, .name("a"), .op("."), .name("b"), .op("["), .integer(1), .op(":"), .op("]"), .op("|"),
            .name("x"), .op("("), .name("y"), .op("="), .float(2.5), .op(")"), .op("~"), .string("q"), .op("//"),
            .integer(3), .variableEnd, .end,
        ])
    }

    func testStringEscapesFollowPython() throws {
        XCTAssertEqual(try kinds(#"{{ 'a\n\t\x41\u00e9\'\\\q' }}"#)[1], .string("a\n\tAé'\\\\q"))
    }

    func testClosingBracesInsideDictLiteralDoNotEndTheTag() throws {
        let tokens = try kinds("{{ {'a': {'b': 1}} }}")
        XCTAssertEqual(tokens.filter { $0 == .variableEnd }.count, 1)
        XCTAssertEqual(tokens.last, .end)
    }

    func testRawBlockIsText() throws {
        XCTAssertEqual(try kinds("{% raw %}{{ x }}{% endraw %}"), [.text("{{ x }}"), .end])
    }

    func testTokensCarryLineAndColumn() throws {
        var lexer = TemplateLexer(source: "ab\n  {{ name }}")
        let name = try lexer.tokenize().first { $0.kind == .name("name") }
        XCTAssertEqual(name?.line, 2)
        XCTAssertEqual(name?.column, 6)
    }

    func testUnterminatedTagIsASyntaxErrorAtItsStart() {
        var lexer = TemplateLexer(source: "x\ny {{ a")
        XCTAssertThrowsError(try lexer.tokenize()) { error in
            XCTAssertEqual(error as? ChatTemplateError, .syntax(message: "unexpected end of template, expected '}}'", line: 2, column: 3))
        }
    }

    func testUnbalancedBracketIsASyntaxError() {
        var lexer = TemplateLexer(source: "{{ a) }}")
        XCTAssertThrowsError(try lexer.tokenize()) { error in
            XCTAssertEqual(error as? ChatTemplateError, .syntax(message: "unexpected ')'", line: 1, column: 5))
        }
    }

    func testUnterminatedCommentAndStringAreSyntaxErrors() {
        var comment = TemplateLexer(source: "a {# b")
        XCTAssertThrowsError(try comment.tokenize())
        var string = TemplateLexer(source: "{{ 'abc }}")
        XCTAssertThrowsError(try string.tokenize())
    }
}
