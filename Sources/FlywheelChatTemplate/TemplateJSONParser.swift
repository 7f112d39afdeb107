/// A strict JSON reader producing template values, objects in document order (as Python's
/// `json.loads` builds dicts). Used for tool-call arguments and by the fixture tests.
struct TemplateJSONParser {
    /// Deeper nesting than this is refused rather than recursing without bound.
    static let maxDepth = 128

    private let bytes: [UInt8]
    private var pos = 0
    private var depth = 0

    init(_ text: String) {
        bytes = Array(text.utf8)
    }

    mutating func parseDocument() throws(ChatTemplateError) -> ChatTemplateValue {
        let value = try parseValue()
        skipWhitespace()
        guard pos == bytes.count else { throw error("trailing characters") }
        return value
    }

    private mutating func parseValue() throws(ChatTemplateError) -> ChatTemplateValue {
        skipWhitespace()
        guard pos < bytes.count else { throw error("unexpected end of JSON") }
        switch bytes[pos] {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): return try literal("true", .bool(true))
        case UInt8(ascii: "f"): return try literal("false", .bool(false))
        case UInt8(ascii: "n"): return try literal("null", .none)
        default: return try parseNumber()
        }
    }

    private mutating func parseObject() throws(ChatTemplateError) -> ChatTemplateValue {
        try descend()
        defer { depth -= 1 }
        pos += 1
        var object = ChatTemplateObject()
        skipWhitespace()
        if consume(UInt8(ascii: "}")) { return .object(object) }
        while true {
            skipWhitespace()
            guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try parseString()
            skipWhitespace()
            guard consume(UInt8(ascii: ":")) else { throw error("expected ':'") }
            object[key] = try parseValue()
            skipWhitespace()
            if consume(UInt8(ascii: "}")) { return .object(object) }
            guard consume(UInt8(ascii: ",")) else { throw error("expected ',' or '}'") }
        }
    }

    private mutating func parseArray() throws(ChatTemplateError) -> ChatTemplateValue {
        try descend()
        defer { depth -= 1 }
        pos += 1
        var items: [ChatTemplateValue] = []
        skipWhitespace()
        if consume(UInt8(ascii: "]")) { return .array(items) }
        while true {
            items.append(try parseValue())
            skipWhitespace()
            if consume(UInt8(ascii: "]")) { return .array(items) }
            guard consume(UInt8(ascii: ",")) else { throw error("expected ',' or ']'") }
        }
    }

    private mutating func parseString() throws(ChatTemplateError) -> String {
        pos += 1
        var out: [UInt8] = []
        while pos < bytes.count {
            let byte = bytes[pos]
            pos += 1
            switch byte {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard pos < bytes.count else { break }
                let escaped = bytes[pos]
                pos += 1
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(escaped)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if (0xD800..<0xDC00).contains(code), pos + 1 < bytes.count,
                       bytes[pos] == UInt8(ascii: "\\"), bytes[pos + 1] == UInt8(ascii: "u") {
                        let save = pos
                        pos += 2
                        let low = try hex4()
                        if (0xDC00..<0xE000).contains(low) {
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        } else {
                            pos = save
                        }
                    }
                    let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                    out.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw error("invalid escape")
                }
            default:
                guard byte >= 0x20 else { throw error("control character in string") }
                out.append(byte)
            }
        }
        throw error("unterminated string")
    }

    private mutating func hex4() throws(ChatTemplateError) -> UInt32 {
        guard pos + 4 <= bytes.count,
              let value = UInt32(String(decoding: bytes[pos..<pos + 4], as: UTF8.self), radix: 16)
        else { throw error("invalid \\u escape") }
        pos += 4
        return value
    }

    private mutating func parseNumber() throws(ChatTemplateError) -> ChatTemplateValue {
        let start = pos
        var isInteger = true
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
        while pos < bytes.count {
            let byte = bytes[pos]
            if (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                pos += 1
            } else if byte == UInt8(ascii: ".") || byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
                        || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") {
                isInteger = false
                pos += 1
            } else {
                break
            }
        }
        let text = String(decoding: bytes[start..<pos], as: UTF8.self)
        if isInteger, let value = Int(text) { return .int(value) }
        guard !text.isEmpty, text != "-", let value = Double(text) else { throw error("invalid value") }
        return .double(value)
    }

    private mutating func literal(_ word: String, _ value: ChatTemplateValue) throws(ChatTemplateError) -> ChatTemplateValue {
        let utf8 = Array(word.utf8)
        guard pos + utf8.count <= bytes.count, Array(bytes[pos..<pos + utf8.count]) == utf8 else {
            throw error("invalid literal")
        }
        pos += utf8.count
        return value
    }

    private mutating func descend() throws(ChatTemplateError) {
        depth += 1
        if depth > Self.maxDepth { throw error("nested too deeply") }
    }

    private mutating func skipWhitespace() {
        while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard pos < bytes.count, bytes[pos] == byte else { return false }
        pos += 1
        return true
    }

    private func error(_ message: String) -> ChatTemplateError {
        .runtime(message: "invalid JSON at byte \(pos): \(message)", line: 0)
    }
}
