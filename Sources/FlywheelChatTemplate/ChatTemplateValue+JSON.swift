import FlywheelJSON

extension ChatTemplateValue {
    /// Values nested deeper than this are refused when parsed, serialized or built while rendering,
    /// which keeps recursion off the end of small thread stacks.
    static let maxNestingDepth = 128

    /// Parses JSON text with `FlywheelJSON` (strict RFC 8259); objects keep their key order, as
    /// Python's `json.loads` builds dicts, and a repeated key keeps its first position and last value.
    public init(json: String) throws(ChatTemplateError) {
        do {
            self.init(try JSONParser.parse(json, limits: JSONParser.Limits(maxDepth: Self.maxNestingDepth)))
        } catch {
            throw .runtime(message: "invalid JSON at byte \(error.offset): \(error.message)", line: 0)
        }
    }

    /// A parsed JSON value as templates see it: `null` is `none`, objects keep their key order.
    public init(_ json: JSON) {
        switch json {
        case .null: self = .none
        case .bool(let b): self = .bool(b)
        case .int(let i): self = .int(Int(i))
        case .double(let d): self = .double(d)
        case .string(let s): self = .string(s)
        case .array(let items): self = .array(items.map(ChatTemplateValue.init))
        case .object(let o): self = .object(ChatTemplateObject(o.map { ($0.key, ChatTemplateValue($0.value)) }))
        }
    }

    /// Python's `json.dumps(x, ensure_ascii=..., indent=..., separators=..., sort_keys=...)`, which
    /// Hugging Face installs as the `tojson` filter. `indent` is a prefix string per level (Python's
    /// int indent is that many spaces); `nil` means one line.
    func jsonString(
        ensureASCII: Bool = false, indent: String? = nil, separators: (item: String, key: String)? = nil,
        sortKeys: Bool = false, limit: Int = Int.max, line: Int = 0
    ) throws(ChatTemplateError) -> String {
        let separators = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        try writeJSON(into: &out, ensureASCII: ensureASCII, indent: indent, separators: separators,
                      sortKeys: sortKeys, level: 0, limit: limit, line: line)
        return out
    }

    private func writeJSON(
        into out: inout String, ensureASCII: Bool, indent: String?, separators: (item: String, key: String),
        sortKeys: Bool, level: Int, limit: Int, line: Int
    ) throws(ChatTemplateError) {
        guard level < Self.maxNestingDepth else {
            throw .runtime(message: "tojson: value nested too deeply", line: line)
        }
        // Lists can share storage, so a small value can serialize to an enormous string.
        guard out.utf8.count <= limit else { throw .limitExceeded("tojson output larger than \(limit) bytes") }
        switch self {
        case .none: out += "null"
        case let .bool(value): out += value ? "true" : "false"
        case let .int(value): out += String(value)
        case let .double(value):
            if value.isNaN { out += "NaN" } else if value.isInfinite { out += value < 0 ? "-Infinity" : "Infinity" } else {
                out += PythonString.floatRepr(value)
            }
        case let .string(value): writeJSONString(value, into: &out, ensureASCII: ensureASCII)
        case let .array(items):
            guard !items.isEmpty else {
                out += "[]"
                return
            }
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += separators.item }
                if let indent { out += "\n" + String(repeating: indent, count: level + 1) }
                try item.writeJSON(into: &out, ensureASCII: ensureASCII, indent: indent, separators: separators,
                                   sortKeys: sortKeys, level: level + 1, limit: limit, line: line)
            }
            if let indent { out += "\n" + String(repeating: indent, count: level) }
            out += "]"
            guard out.utf8.count <= limit else { throw .limitExceeded("tojson output larger than \(limit) bytes") }
        case let .object(object):
            guard !object.isEmpty else {
                out += "{}"
                return
            }
            var pairs = object.pairs
            if sortKeys { pairs.sort { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) } }
            out += "{"
            for (index, pair) in pairs.enumerated() {
                if index > 0 { out += separators.item }
                if let indent { out += "\n" + String(repeating: indent, count: level + 1) }
                writeJSONString(pair.key, into: &out, ensureASCII: ensureASCII)
                out += separators.key
                try pair.value.writeJSON(into: &out, ensureASCII: ensureASCII, indent: indent, separators: separators,
                                         sortKeys: sortKeys, level: level + 1, limit: limit, line: line)
            }
            if let indent { out += "\n" + String(repeating: indent, count: level) }
            out += "}"
        case .undefined, .namespace:
            throw .runtime(message: "Object of type \(typeName) is not JSON serializable", line: line)
        }
    }
}

private func writeJSONString(_ value: String, into out: inout String, ensureASCII: Bool) {
    var view = String.UnicodeScalarView()
    view.append("\"")
    for scalar in value.unicodeScalars {
        switch scalar {
        case "\"": view.append(contentsOf: "\\\"".unicodeScalars)
        case "\\": view.append(contentsOf: "\\\\".unicodeScalars)
        case "\n": view.append(contentsOf: "\\n".unicodeScalars)
        case "\r": view.append(contentsOf: "\\r".unicodeScalars)
        case "\t": view.append(contentsOf: "\\t".unicodeScalars)
        case "\u{08}": view.append(contentsOf: "\\b".unicodeScalars)
        case "\u{0C}": view.append(contentsOf: "\\f".unicodeScalars)
        default:
            if scalar.value < 0x20 || (ensureASCII && scalar.value > 0x7E) {
                if scalar.value > 0xFFFF {
                    let offset = scalar.value - 0x10000
                    view.append(contentsOf: unicodeEscape(0xD800 + (offset >> 10)).unicodeScalars)
                    view.append(contentsOf: unicodeEscape(0xDC00 + (offset & 0x3FF)).unicodeScalars)
                } else {
                    view.append(contentsOf: unicodeEscape(scalar.value).unicodeScalars)
                }
            } else {
                view.append(scalar)
            }
        }
    }
    view.append("\"")
    out += String(view)
}

private func unicodeEscape(_ code: UInt32) -> String {
    let hex = String(code, radix: 16)
    return "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
}
