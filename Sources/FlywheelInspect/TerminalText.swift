/// Makes logged text safe to print on an operator's terminal.
///
/// Everything in the log came from clients, so printed raw it could carry escape sequences that clear the
/// screen, move the cursor, retitle the window or reorder text (bidi overrides). Human output goes through
/// `visible`, JSON output through `jsonSafe`; neither changes ordinary text.
public enum TerminalText {
    /// `text` with every control character spelled out: C0 controls as `\e`, `\r`, `\a`, `\0`, `\x01`, ...;
    /// DEL as `\x7f`; C1 controls (U+0080 to U+009F, e.g. U+009B, a one-character CSI) and the bidi and line
    /// separator controls (U+061C, U+200E/F, U+202A to U+202E, U+2066 to U+2069, U+2028/9) as `\u{9b}`.
    /// - Parameter multiline: keep line feeds and tabs, for blocks whose line breaks carry meaning; a
    ///   carriage return is still spelled out (it could overwrite the line before it).
    public static func visible(_ text: String, multiline: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, multiline: multiline) }) else { return text }
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, multiline: multiline) else {
                out.append(scalar)
                continue
            }
            out.append(contentsOf: spelled(scalar).unicodeScalars)
        }
        return String(out)
    }

    /// Serialized JSON with DEL, C1 and bidi controls written as `\uXXXX` escapes, so a line of `--json`
    /// output is inert on a terminal yet decodes to the same value. Only correct for JSON text: there these
    /// characters can only appear inside strings, where the escape means the same character. (C0 controls
    /// are already escaped by every JSON writer.)
    public static func jsonSafe(_ json: String) -> String {
        guard json.unicodeScalars.contains(where: { $0.value >= 0x7F && needsEscape($0, multiline: false) }) else { return json }
        var out = String.UnicodeScalarView()
        for scalar in json.unicodeScalars {
            if scalar.value >= 0x7F && needsEscape(scalar, multiline: false) {
                out.append(contentsOf: "\\u\(hex(scalar.value, digits: 4))".unicodeScalars)
            } else {
                out.append(scalar)
            }
        }
        return String(out)
    }

    static func needsEscape(_ scalar: Unicode.Scalar, multiline: Bool) -> Bool {
        switch scalar.value {
        case 0x0A, 0x09: return !multiline
        case 0x00..<0x20, 0x7F..<0xA0: return true
        case 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069, 0x2028, 0x2029: return true
        default: return false
        }
    }

    private static func spelled(_ scalar: Unicode.Scalar) -> String {
        switch scalar.value {
        case 0x00: return "\\0"
        case 0x07: return "\\a"
        case 0x08: return "\\b"
        case 0x09: return "\\t"
        case 0x0A: return "\\n"
        case 0x0B: return "\\v"
        case 0x0C: return "\\f"
        case 0x0D: return "\\r"
        case 0x1B: return "\\e"
        case 0x00..<0x80: return "\\x" + hex(scalar.value, digits: 2)
        default: return "\\u{" + String(scalar.value, radix: 16) + "}"
        }
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }
}
