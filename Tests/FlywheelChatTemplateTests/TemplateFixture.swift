import Foundation
import XCTest
@testable import FlywheelChatTemplate

/// One fixture file written by scripts/engine/make_template_fixtures.py: a template (or, for the
/// feature file, one template per case) and the cases Python's jinja2 rendered with it.
struct TemplateFixture {
    struct Case {
        var name: String
        var template: String
        var messages: [ChatMessage]
        var addGenerationPrompt: Bool
        var bosToken: String
        var eosToken: String
        var tools: [ChatTemplateValue]?
        var extra: [String: ChatTemplateValue]
        /// The exact output, or nil when rendering must fail.
        var expected: String?
        /// "raised" (with `raisedMessage`) or "other".
        var errorKind: String?
        var raisedMessage: String?
    }

    var now: Int
    var cases: [Case]

    static func load(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> TemplateFixture {
        let url = try XCTUnwrap(
            Bundle.module.url(forResource: name, withExtension: "json", subdirectory: "Fixtures"),
            "missing fixture \(name).json", file: file, line: line)
        let root = try ChatTemplateValue(json: String(decoding: try Data(contentsOf: url), as: UTF8.self))
        var sharedTemplate: String?
        if let templateFile = root["template_file"]?.stringValue {
            let templateURL = try XCTUnwrap(
                Bundle.module.resourceURL?.appendingPathComponent("Fixtures").appendingPathComponent(templateFile),
                file: file, line: line)
            sharedTemplate = String(decoding: try Data(contentsOf: templateURL), as: UTF8.self)
        }
        var cases: [Case] = []
        for item in root["cases"]?.arrayValue ?? [] {
            var extra = item["extra"]?.objectValue.map { Dictionary(uniqueKeysWithValues: $0.pairs.map { ($0.key, $0.value) }) } ?? [:]
            // Feature cases carry free-form variables; they reach the template through `extra`.
            if let context = item["context"]?.objectValue {
                for (key, value) in context.pairs { extra[key] = value }
            }
            cases.append(Case(
                name: item["name"]?.stringValue ?? "?",
                template: try XCTUnwrap(item["template"]?.stringValue ?? sharedTemplate),
                messages: try (item["messages"]?.arrayValue ?? []).map(Self.message),
                addGenerationPrompt: item["add_generation_prompt"] == .bool(true),
                bosToken: item["bos_token"]?.stringValue ?? "",
                eosToken: item["eos_token"]?.stringValue ?? "",
                tools: item["tools"]?.arrayValue,
                extra: extra,
                expected: item["expected"]?.stringValue,
                errorKind: item["error_kind"]?.stringValue,
                raisedMessage: item["error"]?.stringValue))
        }
        return TemplateFixture(now: root["now"]?.integerValue ?? 0, cases: cases)
    }

    /// An OpenAI wire message from the fixture, as a caller of ChatTemplate would build it.
    static func message(_ wire: ChatTemplateValue) throws -> ChatMessage {
        var content: ChatContent?
        switch wire["content"] {
        case let .string(text)?: content = .text(text)
        case let .array(parts)?: content = .parts(parts.compactMap { $0["text"]?.stringValue })
        default: content = nil
        }
        let toolCalls = try wire["tool_calls"]?.arrayValue?.map { call in
            ChatToolCall(
                id: try XCTUnwrap(call["id"]?.stringValue),
                type: call["type"]?.stringValue ?? "function",
                functionName: try XCTUnwrap(call["function"]?["name"]?.stringValue),
                arguments: try XCTUnwrap(call["function"]?["arguments"]?.stringValue))
        }
        return ChatMessage(
            role: try XCTUnwrap(wire["role"]?.stringValue), content: content, name: wire["name"]?.stringValue,
            toolCalls: toolCalls, toolCallID: wire["tool_call_id"]?.stringValue)
    }

    /// Renders every case and checks it against what Jinja produced, byte for byte.
    func verifyAll(file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertFalse(cases.isEmpty, file: file, line: line)
        for fixtureCase in cases {
            let template = try ChatTemplate(source: fixtureCase.template)
            let result = Result { () throws(ChatTemplateError) -> String in
                try template.render(
                    messages: fixtureCase.messages, addGenerationPrompt: fixtureCase.addGenerationPrompt,
                    bosToken: fixtureCase.bosToken, eosToken: fixtureCase.eosToken, tools: fixtureCase.tools,
                    extra: fixtureCase.extra, secondsSince1970: now)
            }
            switch (result, fixtureCase.expected) {
            case let (.success(output), expected?):
                XCTAssertEqual(output, expected, "case \(fixtureCase.name)", file: file, line: line)
            case let (.success(output), nil):
                XCTFail("case \(fixtureCase.name): expected an error, rendered \(output.debugDescription)", file: file, line: line)
            case let (.failure(error), expected):
                if expected != nil {
                    XCTFail("case \(fixtureCase.name): \(error)", file: file, line: line)
                } else if fixtureCase.errorKind == "raised" {
                    XCTAssertEqual(error, .templateRaised(fixtureCase.raisedMessage ?? ""), "case \(fixtureCase.name)",
                                   file: file, line: line)
                } else if case .templateRaised = error {
                    XCTFail("case \(fixtureCase.name): expected a runtime error, got \(error)", file: file, line: line)
                }
            }
        }
    }
}

extension ChatTemplateValue {
    subscript(key: String) -> ChatTemplateValue? {
        if case let .object(object) = self { return object[key] }
        return nil
    }

    var stringValue: String? {
        if case let .string(text) = self { return text }
        return nil
    }

    var arrayValue: [ChatTemplateValue]? {
        if case let .array(items) = self { return items }
        return nil
    }

    var objectValue: ChatTemplateObject? {
        if case let .object(object) = self { return object }
        return nil
    }
}
