import XCTest
@testable import FlywheelChatTemplate

final class TemplateParserTests: XCTestCase {
    private func parse(_ source: String) throws -> [TemplateStatement] {
        var lexer = TemplateLexer(source: source)
        var parser = TemplateParser(tokens: try lexer.tokenize())
        return try parser.parseTemplate()
    }

    private func render(_ source: String) throws -> String {
        try ChatTemplate(source: source).render(messages: [], addGenerationPrompt: false, bosToken: "", eosToken: "")
    }

    func testFilterBindsTighterThanPlusAndUnaryMinus() throws {
        XCTAssertEqual(try render("{{ ' a ' | trim + 'b' }}|{{ -3 | abs }}|{{ 1 + 2 * 3 ** 2 }}"), "ab|3|19")
    }

    func testConditionalExpressionWithoutElseIsUndefined() throws {
        XCTAssertEqual(try render("[{{ 'x' if false }}][{{ 'a' if 0 else 'b' if 1 else 'c' }}]"), "[][b]")
    }

    func testForLoopIfClauseFiltersRatherThanConditionalExpression() throws {
        XCTAssertEqual(try render("{% for x in [1, 2, 3] if x != 2 %}{{ x }}{% endfor %}"), "13")
    }

    func testTestArgumentWithoutParentheses() throws {
        XCTAssertEqual(try render("{{ 6 is divisibleby 3 }} {{ 'a' is not equalto 'b' }} {{ x is defined and true }}"),
                       "True True False")
    }

    func testMissingEndTagNamesWhatWasExpected() {
        XCTAssertThrowsError(try parse("{% for x in y %}\nbody")) { error in
            XCTAssertEqual(error as? ChatTemplateError,
                           .syntax(message: "unexpected end of template, expected 'else' or 'endfor'", line: 2, column: 5))
        }
    }

    func testStrayEndTagIsASyntaxErrorWithPosition() {
        XCTAssertThrowsError(try parse("ok\n  {% endif %}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .syntax(message: "unexpected 'endif'", line: 2, column: 6))
        }
    }

    func testBadExpressionReportsLineAndColumn() {
        XCTAssertThrowsError(try parse("a\nb\n{{ x + }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .syntax(message: "unexpected '}}'", line: 3, column: 8))
            XCTAssertEqual("\(error)", "chat template syntax error at line 3, column 8: unexpected '}}'")
        }
    }

    func testUnsupportedTagIsNamed() {
        XCTAssertThrowsError(try parse("\n{% include 'other.jinja' %}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .unsupported(what: "tag 'include'", line: 2))
        }
    }

    func testDeepNestingIsRefusedNotCrashing() {
        let source = "{{ " + String(repeating: "(", count: 500) + "1" + String(repeating: ")", count: 500) + " }}"
        XCTAssertThrowsError(try parse(source)) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
        let blocks = String(repeating: "{% if true %}", count: 300) + String(repeating: "{% endif %}", count: 300)
        XCTAssertThrowsError(try parse(blocks)) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testSetForms() throws {
        XCTAssertEqual(try render("{% set a, b = [1, 2] %}{% set c = 3, 4 %}{{ a }}{{ b }}{{ c }}"), "12[3, 4]")
    }
}
