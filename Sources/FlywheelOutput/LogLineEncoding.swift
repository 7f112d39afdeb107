/// Renders one line of the daemon's output. Every string that reaches a line (a message, a model name a client
/// sent, a header value) is escaped here, so no input can start a new line, rewrite the terminal or break the
/// JSON: in text, C0 and C1 control characters and DEL become `\n`, `\r`, `\t`, `\e`... or `\xNN` / `\u{NN}`;
/// in JSON, they become `\uNNNN` escapes.
public enum LogLineEncoding {
    /// `2026-11-30T23:59:01.123Z info listening on http://... key=value key="a value"`.
    public static func text(time: String, level: LogLevel, message: String, fields: [(String, String)]) -> String {
        var out = time
        out += " "
        out += level.name
        out += " "
        out += escapedText(message)
        for (key, value) in fields {
            out += " "
            out += escapedText(key)
            out += "="
            out += quotedIfNeeded(escapedText(value))
        }
        return out
    }

    /// `{"time":"...","level":"info","msg":"...","key":"value",...}`; a field named like one of the first three is
    /// written with a `_` prefix rather than twice. Fields named in `numbers` whose value is a plain decimal number
    /// are written as JSON numbers (`"status":200`), anything else as a string.
    public static func json(time: String, level: LogLevel, message: String, fields: [(String, String)],
                            numbers: Set<String> = []) -> String {
        var out = "{\"time\":"
        appendJSONString(time, to: &out)
        out += ",\"level\":"
        appendJSONString(level.name, to: &out)
        out += ",\"msg\":"
        appendJSONString(message, to: &out)
        var seen: Set<String> = ["time", "level", "msg"]
        for (key, value) in fields {
            var name = key
            while !seen.insert(name).inserted { name = "_" + name }
            out += ","
            appendJSONString(name, to: &out)
            out += ":"
            if numbers.contains(key), isPlainNumber(value) {
                out += value
            } else {
                appendJSONString(value, to: &out)
            }
        }
        out += "}"
        return out
    }

    /// `s` with every control character (C0, DEL, C1) written as a visible escape, and `\` doubled so an
    /// escape in the input cannot pass for one of ours.
    public static func escapedText(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { isControl($0) || $0 == "\\" }) else { return s }
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{1B}": out += "\\e"
            default:
                if isControl(scalar) {
                    out += scalar.value < 0x80 ? "\\x" + hex(scalar.value, width: 2) : "\\u{" + hex(scalar.value, width: 2) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// Quotes a text value holding a space, a quote, `=` or nothing, so `key=value` pairs split unambiguously.
    static func quotedIfNeeded(_ escaped: String) -> String {
        guard escaped.isEmpty || escaped.utf8.contains(where: { $0 == 0x20 || $0 == 0x22 || $0 == 0x3D }) else { return escaped }
        var out = "\""
        for c in escaped { out += c == "\"" ? "\\\"" : String(c) }
        return out + "\""
    }

    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                // C1 controls and the line separators are valid JSON, but a terminal or a line-based reader may
                // act on them: escape those too.
                if isControl(scalar) || scalar.value == 0x2028 || scalar.value == 0x2029 {
                    out += "\\u" + hex(scalar.value, width: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// `123` or `12.5`: digits, at most one point between digits, at most 32 characters.
    static func isPlainNumber(_ s: String) -> Bool {
        let bytes = Array(s.utf8)
        guard (1...32).contains(bytes.count), bytes.first != 0x2E, bytes.last != 0x2E else { return false }
        var points = 0
        for b in bytes {
            if b == 0x2E { points += 1; continue }
            guard b >= 0x30 && b <= 0x39 else { return false }
        }
        return points <= 1 && !(bytes.count > 1 && bytes[0] == 0x30 && bytes[1] != 0x2E)
    }

    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (scalar.value >= 0x7F && scalar.value <= 0x9F)
    }

    static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
