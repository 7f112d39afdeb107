import XCTest
@testable import FlywheelChatTemplate

final class TemplateInterpreterTests: XCTestCase {
    /// Small templates covering whitespace control, loops, scoping, namespaces, reprs, tojson,
    /// filters, tests and errors, each checked against Python jinja2's output.
    func testFeatureTemplatesMatchJinja() throws {
        try TemplateFixture.load("jinja_features").verifyAll()
    }

    private func render(_ source: String, _ context: [String: ChatTemplateValue] = [:],
                        limits: ChatTemplateLimits = ChatTemplateLimits()) throws(ChatTemplateError) -> String {
        try ChatTemplate(source: source, limits: limits)
            .render(messages: [], addGenerationPrompt: false, bosToken: "", eosToken: "", extra: context, secondsSince1970: 0)
    }

    func testLoopVariablesCountFilteredItems() throws {
        let output = try render("{% for x in xs if x > 1 %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}",
                                ["xs": [1, 2, 3]])
        XCTAssertEqual(output, "1/2,2/2")
    }

    func testSetInsideLoopDoesNotLeakButNamespaceDoes() throws {
        let output = try render("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set n = n + i %}"
                                + "{% set ns.n = ns.n + i %}{% endfor %}{{ n }} {{ ns.n }}")
        XCTAssertEqual(output, "0 6")
    }

    func testRaiseExceptionSurfacesItsMessage() {
        XCTAssertThrowsError(try render("{{ raise_exception('System role not supported') }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .templateRaised("System role not supported"))
        }
    }

    func testUnknownFilterIsNamedWithItsLine() {
        XCTAssertThrowsError(try render("a\nb\n{{ x | frobnicate }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .unsupported(what: "filter 'frobnicate'", line: 3))
            XCTAssertEqual("\(error)", "unsupported filter 'frobnicate' at line 3")
        }
    }

    func testUnknownTestAndMethodAndFunctionAreNamed() {
        XCTAssertThrowsError(try render("{{ 1 is prime }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .unsupported(what: "test 'prime'", line: 1))
        }
        XCTAssertThrowsError(try render("\n{{ 'a'.zfill(3) }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .unsupported(what: "method 'str.zfill'", line: 2))
        }
        XCTAssertThrowsError(try render("{{ lipsum() }}")) { error in
            XCTAssertEqual(error as? ChatTemplateError, .unsupported(what: "function 'lipsum'", line: 1))
        }
    }

    func testAttributeOfUndefinedIsARuntimeErrorWithLine() {
        XCTAssertThrowsError(try render("ok\n{{ message.content.strip() }}")) { error in
            guard case let .runtime(_, line)? = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertEqual(line, 2)
        }
    }

    func testOutputCapStopsRunawayTemplates() {
        let limits = ChatTemplateLimits(maxOutputBytes: 1000)
        XCTAssertThrowsError(try render("{% for i in range(100) %}{{ 'x' * 50 }}{% endfor %}", limits: limits)) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testLoopIterationCapStopsNestedLoops() {
        let limits = ChatTemplateLimits(maxLoopIterations: 5000)
        let source = "{% for a in range(100) %}{% for b in range(100) %}{% endfor %}{% endfor %}"
        XCTAssertThrowsError(try render(source, limits: limits)) { error in
            XCTAssertEqual(error as? ChatTemplateError, .limitExceeded("more than 5000 loop iterations"))
        }
    }

    func testRecursiveMacroHitsTheCallDepthLimit() {
        let source = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"
        XCTAssertThrowsError(try render(source)) { error in
            guard case let .limitExceeded(message)? = error as? ChatTemplateError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("macro calls nested deeper than 32"), message)
        }
    }

    func testDoublingAStringInALoopHitsTheSizeCapBeforeMemoryRunsOut() {
        let source = "{% set ns = namespace(s='ab') %}{% for i in range(80) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
        XCTAssertThrowsError(try render(source)) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try render("{{ 'x' * 100000000000 }}")) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testPrintingAHugeListIsCappedWhileBeingBuilt() {
        let build = "{% set ns = namespace(x=['0123456789']) %}{% for i in range(19) %}{% set ns.x = ns.x + ns.x %}{% endfor %}"
        let limits = ChatTemplateLimits(maxOutputBytes: 100_000)
        for use in ["{{ ns.x }}", "{{ ns.x|tojson }}", "{{ ns.x|string|length }}", "{{ ns.x|join }}"] {
            XCTAssertThrowsError(try render(build + use, limits: limits), use) { error in
                guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(use): \(error)") }
            }
        }
    }

    func testSharedNestedListsExhaustTheInspectionBudget() {
        // Each level doubles the logical size while memory stays linear (the halves are shared).
        let source = "{% set ns = namespace(x=[1]) %}{% for i in range(70) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
        XCTAssertThrowsError(try render(source, limits: ChatTemplateLimits(maxInspectedNodes: 100_000))) { error in
            XCTAssertEqual(error as? ChatTemplateError, .limitExceeded("more than 100000 value nodes inspected"))
        }
    }

    func testReplaceThatWouldExplodeIsRefused() {
        let source = "{% set s = 'a' * 100000 %}{{ s.replace('a', 'b' * 1000) }}"
        XCTAssertThrowsError(try render(source)) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testEmptySplitSeparatorIsAnErrorNotAHang() {
        XCTAssertThrowsError(try render("{{ 'abc'.split('') }}")) { error in
            guard case .runtime? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testWrappingValuesDeeperAndDeeperIsRefused() {
        for wrap in ["[ns.x]", "{'k': ns.x}", "dict(k=ns.x)"] {
            let source = "{% set ns = namespace(x=1) %}{% for i in range(100000) %}{% set ns.x = \(wrap) %}{% endfor %}"
            XCTAssertThrowsError(try render(source), wrap) { error in
                guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(wrap): \(error)") }
            }
        }
    }

    /// Found while fuzzing: the width was turned into spaces before any size check (a 100 TB allocation).
    func testHugeIndentWidthIsRefusedBeforeItIsBuilt() {
        for source in ["{{ 'a'|indent(99999999999999) }}", "{{ [1]|tojson(indent=99999999999999) }}"] {
            XCTAssertThrowsError(try render(source), source) { error in
                guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(source): \(error)") }
            }
        }
        XCTAssertEqual(try render("{{ 'a\\nb'|indent(2) }}|{{ [1]|tojson(indent=1) }}|{{ 'x'|indent(-3, true) }}"),
                       "a\n  b|[\n 1\n]|x")
    }

    /// Found while fuzzing: an empty string times 10**18 looped 10**18 times, an empty list allocated 10**18 copies.
    func testRepeatingSomethingEmptyAnyNumberOfTimesIsEmptyAtOnce() throws {
        XCTAssertEqual(try render("[{{ '' * 999999999999999999 }}]{{ ([] * 999999999999999999)|length }}"), "[]0")
        XCTAssertEqual(try render("{{ 'ab' * 2 }}{{ [1] * 3 }}{{ 'x' * -1 }}"), "abab[1, 1, 1]")
        XCTAssertThrowsError(try render("{{ 'a' * 999999999999999999 }}")) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testHugeRangeIsRefused() {
        XCTAssertThrowsError(try render("{{ range(10000000)|length }}")) { error in
            guard case .limitExceeded? = error as? ChatTemplateError else { return XCTFail("\(error)") }
        }
    }

    func testStrftimeNowUsesTheInjectedClock() throws {
        let output = try ChatTemplate(source: "{{ strftime_now('%d %b %Y') }}")
            .render(messages: [], addGenerationPrompt: false, bosToken: "", eosToken: "", secondsSince1970: 1_721_952_000)
        XCTAssertEqual(output, "26 Jul 2024")
    }

    func testMacroDefaultsAndKeywordArguments() throws {
        let output = try render("{% macro tag(name, open='<', close='>') %}{{ open }}{{ name }}{{ close }}{% endmacro %}"
                                + "{{ tag('a') }}{{ tag('b', close=']') }}")
        XCTAssertEqual(output, "<a><b]")
    }

    func testMessagesExposeOnlyTheFieldsThatAreSet() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}{{ m.content is defined }},{{ m.tool_calls is defined }};{% endfor %}")
        let output = try template.render(
            messages: [ChatMessage(role: "user", text: "hi"),
                       ChatMessage(role: "assistant", toolCalls: [ChatToolCall(id: "1", functionName: "f", arguments: "{}")])],
            addGenerationPrompt: false, bosToken: "", eosToken: "")
        XCTAssertEqual(output, "True,False;False,True;")
    }
}
