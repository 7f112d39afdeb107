import Foundation
import FlywheelJSON

/// Deterministic checks of an answer against a reference answer, chosen by what the reference is:
/// - a tool call: `tool_call` (the same function names in order, arguments equal as JSON);
/// - JSON text (an extraction task): `json_valid` (the answer parses) and `json_fields` (every field of the
///   reference has an equal value in the answer; extra fields are allowed);
/// - anything else: `exact` (equal after trimming and collapsing whitespace).
/// Plus `regex` when a pattern is given. An answer passes when every check it got passes.
public struct EvalChecks: Sendable {
    public let regex: String?
    /// `regex` compiled once, here, for every answer the run checks.
    private let pattern: NSRegularExpression?

    public init(regex: String? = nil) throws {
        if let regex {
            guard let pattern = try? NSRegularExpression(pattern: regex) else { throw EvalError("--expect-regex: '\(regex)' is not a valid regular expression") }
            self.pattern = pattern
        } else {
            pattern = nil
        }
        self.regex = regex
    }

    /// Each check's result, by name.
    public func run(answer: JSON, reference: JSON?) -> [String: Bool] {
        var out: [String: Bool] = [:]
        let text = Self.text(answer["content"])
        if let reference {
            if let calls = reference["tool_calls"]?.arrayValue, !calls.isEmpty {
                out["tool_call"] = Self.sameToolCalls(answer["tool_calls"]?.arrayValue ?? [], calls)
            } else if let expected = Self.jsonValue(Self.text(reference["content"])) {
                let got = Self.jsonValue(text)
                out["json_valid"] = got != nil
                out["json_fields"] = got.map { Self.fieldsMatch(expected, $0) } ?? false
            } else {
                out["exact"] = Self.normalized(text) == Self.normalized(Self.text(reference["content"]))
            }
        }
        if let pattern {
            out["regex"] = pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
        }
        return out
    }

    /// A message content as text: a string, or the text parts of an array joined by newlines.
    static func text(_ content: JSON?) -> String {
        switch content {
        case .string(let s)?: return s
        case .array(let parts)?: return parts.compactMap { $0["text"]?.stringValue }.joined(separator: "\n")
        default: return ""
        }
    }

    static func normalized(_ s: String) -> String {
        s.split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }

    /// The text as JSON when it is an object or an array (a model may wrap it in a ```json fence).
    static func jsonValue(_ text: String) -> JSON? {
        var t = Substring(text).drop(while: { $0.isWhitespace })
        if t.hasPrefix("```") {
            t = t.drop(while: { $0 != "\n" })
            if let end = t.range(of: "```", options: .backwards) { t = t[..<end.lowerBound] }
        }
        let trimmed = t.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.hasPrefix("{") || trimmed.hasPrefix("[") else { return nil }
        return try? JSONParser.parse(trimmed, limits: .depthOnly)
    }

    /// Objects: every expected field present and equal (recursively); anything else: equal.
    static func fieldsMatch(_ expected: JSON, _ got: JSON) -> Bool {
        guard case .object(let e) = expected, case .object(let g) = got else { return numbersEqual(expected, got) }
        for (key, value) in e {
            guard let other = g[key], fieldsMatch(value, other) else { return false }
        }
        return true
    }

    /// JSON equality that takes 1 and 1.0 as the same number.
    static func numbersEqual(_ a: JSON, _ b: JSON) -> Bool {
        switch (a, b) {
        case (.int(let x), .double(let y)), (.double(let y), .int(let x)): return Double(x) == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy(numbersEqual)
        case (.object, .object): return fieldsMatch(a, b) && fieldsMatch(b, a)
        default: return a == b
        }
    }

    static func sameToolCalls(_ got: [JSON], _ expected: [JSON]) -> Bool {
        guard got.count == expected.count else { return false }
        for (g, e) in zip(got, expected) {
            guard g["function"]?["name"]?.stringValue == e["function"]?["name"]?.stringValue else { return false }
            let ga = g["function"]?["arguments"]?.stringValue.flatMap { try? JSONParser.parse($0, limits: .depthOnly) }
            let ea = e["function"]?["arguments"]?.stringValue.flatMap { try? JSONParser.parse($0, limits: .depthOnly) }
            guard let ga, let ea, numbersEqual(ga, ea) else { return false }
        }
        return true
    }
}
