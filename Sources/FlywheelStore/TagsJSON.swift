import Foundation

/// Tags are stored as a JSON array of strings. Encoding is hand-written (it runs on the writer thread for
/// every row); decoding, used only by the reader, goes through Foundation.
enum TagsJSON {
    static func encode(_ tags: [String]) -> String {
        if tags.isEmpty { return "[]" }
        var out = "["
        for (index, tag) in tags.enumerated() {
            if index > 0 { out.append(",") }
            out.append("\"")
            for scalar in tag.unicodeScalars {
                switch scalar {
                case "\"": out.append("\\\"")
                case "\\": out.append("\\\\")
                case "\n": out.append("\\n")
                case "\r": out.append("\\r")
                case "\t": out.append("\\t")
                case "\u{08}": out.append("\\b")
                case "\u{0C}": out.append("\\f")
                default:
                    if scalar.value < 0x20 {
                        let hex = String(scalar.value, radix: 16)
                        out.append("\\u" + String(repeating: "0", count: 4 - hex.count) + hex)
                    } else {
                        out.unicodeScalars.append(scalar)
                    }
                }
            }
            out.append("\"")
        }
        out.append("]")
        return out
    }

    /// Decodes a stored tags column; anything that is not a JSON array of strings yields `[]`.
    static func decode(_ text: String) -> [String] {
        if text == "[]" || text.isEmpty { return [] }
        return (try? JSONDecoder().decode([String].self, from: Data(text.utf8))) ?? []
    }
}
