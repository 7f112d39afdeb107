/// Splits template source into tokens the way Jinja does with Hugging Face's settings:
/// `trim_blocks` (the first newline after a block or comment tag is dropped), `lstrip_blocks`
/// (spaces and tabs before a block or comment tag at the start of a line are dropped), the
/// `-`/`+` whitespace-control markers, `\r\n` normalised to `\n`, and one trailing newline of the
/// template removed (`keep_trailing_newline=False`).
struct TemplateLexer {
    private let chars: [Unicode.Scalar]
    private var lineStarts: [Int] = [0]
    private var tokens: [TemplateToken] = []

    init(source: String) {
        var normalized: [Unicode.Scalar] = []
        normalized.reserveCapacity(source.unicodeScalars.count)
        var previousWasCR = false
        for scalar in source.unicodeScalars {
            if scalar == "\r" {
                normalized.append("\n")
                previousWasCR = true
                continue
            }
            if scalar == "\n" && previousWasCR {
                previousWasCR = false
                continue
            }
            previousWasCR = false
            normalized.append(scalar)
        }
        if normalized.last == "\n" { normalized.removeLast() }
        chars = normalized
        for (index, scalar) in chars.enumerated() where scalar == "\n" { lineStarts.append(index + 1) }
    }

    /// Tokenizes the whole template; the last token is `.end`.
    mutating func tokenize() throws(ChatTemplateError) -> [TemplateToken] {
        var pos = 0
        var lineStarting = true
        while pos < chars.count {
            guard let opener = nextOpener(from: pos) else {
                emitText(pos, chars.count)
                break
            }
            var textEnd = opener
            var cursor = opener + 2
            let kind = chars[opener + 1]
            var sign: Unicode.Scalar?
            if cursor < chars.count, chars[cursor] == "-" || chars[cursor] == "+" {
                sign = chars[cursor]
                cursor += 1
            }
            if sign == "-" {
                while textEnd > pos, PythonString.isWhitespace(chars[textEnd - 1]) { textEnd -= 1 }
            } else if sign != "+" && kind != "{" {
                textEnd = lstripEnd(textStart: pos, textEnd: textEnd, lineStarting: lineStarting)
            }
            emitText(pos, textEnd)

            if kind == "#" {
                pos = try skipComment(from: cursor, opener: opener)
            } else if kind == "%", let afterRaw = try rawBlock(from: cursor, opener: opener) {
                pos = afterRaw
            } else {
                pos = try tagTokens(from: cursor, opener: opener, isBlock: kind == "%")
            }
            lineStarting = pos > 0 && chars[pos - 1] == "\n"
        }
        let (line, column) = location(chars.count)
        tokens.append(TemplateToken(kind: .end, line: line, column: column))
        return tokens
    }

    // MARK: - Text and whitespace control

    private func nextOpener(from start: Int) -> Int? {
        var index = start
        while index + 1 < chars.count {
            if chars[index] == "{", chars[index + 1] == "{" || chars[index + 1] == "%" || chars[index + 1] == "#" {
                return index
            }
            index += 1
        }
        return nil
    }

    /// `lstrip_blocks`: drop the whitespace between the last newline of the text and the tag when
    /// that is all the line holds (and the text starts a line, or contains a newline).
    private func lstripEnd(textStart: Int, textEnd: Int, lineStarting: Bool) -> Int {
        var lineStart = textEnd
        while lineStart > textStart, chars[lineStart - 1] != "\n" { lineStart -= 1 }
        guard lineStart > textStart || lineStarting, lineStart < textEnd else { return textEnd }
        for index in lineStart..<textEnd where !PythonString.isWhitespace(chars[index]) { return textEnd }
        return lineStart
    }

    private mutating func emitText(_ start: Int, _ end: Int) {
        guard start < end else { return }
        let (line, column) = location(start)
        tokens.append(TemplateToken(kind: .text(string(start, end)), line: line, column: column))
    }

    /// After a block or comment tag: `-` eats all following whitespace, `+` nothing, otherwise
    /// `trim_blocks` eats one newline.
    private func afterBlockEnd(_ end: Int, sign: Unicode.Scalar?) -> Int {
        var pos = end
        if sign == "-" {
            while pos < chars.count, PythonString.isWhitespace(chars[pos]) { pos += 1 }
        } else if sign != "+", pos < chars.count, chars[pos] == "\n" {
            pos += 1
        }
        return pos
    }

    private func skipComment(from start: Int, opener: Int) throws(ChatTemplateError) -> Int {
        var index = start
        while index + 1 < chars.count {
            if chars[index] == "#", chars[index + 1] == "}" {
                let sign: Unicode.Scalar? = index > start && (chars[index - 1] == "-" || chars[index - 1] == "+")
                    ? chars[index - 1] : nil
                return afterBlockEnd(index + 2, sign: sign)
            }
            index += 1
        }
        throw syntaxError("missing end of comment tag", at: opener)
    }

    /// `{% raw %}...{% endraw %}`: the body is text, not parsed.
    private mutating func rawBlock(from start: Int, opener: Int) throws(ChatTemplateError) -> Int? {
        var index = skipSpaces(start)
        guard matches("raw", at: index) else { return nil }
        index = skipSpaces(index + 3)
        var sign: Unicode.Scalar?
        if index < chars.count, chars[index] == "-" {
            sign = "-"
            index += 1
        }
        guard matches("%}", at: index) else { return nil }
        var bodyStart = index + 2
        if sign == "-" { while bodyStart < chars.count, PythonString.isWhitespace(chars[bodyStart]) { bodyStart += 1 } }
        var search = bodyStart
        while let endOpener = nextOpener(from: search) {
            search = endOpener + 1
            guard chars[endOpener + 1] == "%" else { continue }
            var cursor = endOpener + 2
            var startSign: Unicode.Scalar?
            if cursor < chars.count, chars[cursor] == "-" || chars[cursor] == "+" {
                startSign = chars[cursor]
                cursor += 1
            }
            cursor = skipSpaces(cursor)
            guard matches("endraw", at: cursor) else { continue }
            cursor = skipSpaces(cursor + 6)
            var endSign: Unicode.Scalar?
            if cursor < chars.count, chars[cursor] == "-" || chars[cursor] == "+" {
                endSign = chars[cursor]
                cursor += 1
            }
            guard matches("%}", at: cursor) else { continue }
            var textEnd = endOpener
            if startSign == "-" {
                while textEnd > bodyStart, PythonString.isWhitespace(chars[textEnd - 1]) { textEnd -= 1 }
            } else if startSign != "+" {
                textEnd = lstripEnd(textStart: bodyStart, textEnd: textEnd, lineStarting: false)
            }
            emitText(bodyStart, textEnd)
            return afterBlockEnd(cursor + 2, sign: endSign)
        }
        throw syntaxError("missing end of raw directive", at: opener)
    }

    // MARK: - Inside {{ }} and {% %}

    private mutating func tagTokens(from start: Int, opener: Int, isBlock: Bool) throws(ChatTemplateError) -> Int {
        let (line, column) = location(opener)
        tokens.append(TemplateToken(kind: isBlock ? .blockBegin : .variableBegin, line: line, column: column))
        var pos = start
        var brackets: [Unicode.Scalar] = []
        while true {
            while pos < chars.count, PythonString.isWhitespace(chars[pos]) { pos += 1 }
            guard pos < chars.count else {
                throw syntaxError("unexpected end of template, expected '\(isBlock ? "%}" : "}}")'", at: opener)
            }
            if brackets.isEmpty, let end = tagEnd(at: pos, isBlock: isBlock) {
                let (endLine, endColumn) = location(pos)
                tokens.append(TemplateToken(kind: isBlock ? .blockEnd : .variableEnd, line: endLine, column: endColumn))
                return end
            }
            let (tokenLine, tokenColumn) = location(pos)
            let (kind, next) = try scanToken(at: pos)
            if case let .op(symbol) = kind {
                switch symbol {
                case "(": brackets.append(")")
                case "[": brackets.append("]")
                case "{": brackets.append("}")
                case ")", "]", "}":
                    guard let expected = brackets.popLast() else {
                        throw syntaxError("unexpected '\(symbol)'", at: pos)
                    }
                    guard String(expected) == symbol else {
                        throw syntaxError("unexpected '\(symbol)', expected '\(expected)'", at: pos)
                    }
                default: break
                }
            }
            tokens.append(TemplateToken(kind: kind, line: tokenLine, column: tokenColumn))
            pos = next
        }
    }

    /// The position after the closing tag at `pos`, if one is there.
    private func tagEnd(at pos: Int, isBlock: Bool) -> Int? {
        let close = isBlock ? "%}" : "}}"
        if chars[pos] == "-", matches(close, at: pos + 1) {
            return isBlock ? afterBlockEnd(pos + 3, sign: "-") : afterBlockEnd(pos + 3, sign: "-")
        }
        if isBlock, chars[pos] == "+", matches(close, at: pos + 1) { return pos + 3 }
        if matches(close, at: pos) { return isBlock ? afterBlockEnd(pos + 2, sign: nil) : pos + 2 }
        return nil
    }

    private static let operators: [String] = [
        "//", "**", "==", "!=", ">=", "<=",
        "+", "-", "*", "/", "%", "~", "[", "]", "(", ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";",
    ]

    private func scanToken(at pos: Int) throws(ChatTemplateError) -> (TemplateToken.Kind, Int) {
        let scalar = chars[pos]
        if isDigit(scalar) { return try scanNumber(at: pos) }
        if scalar == "_" || scalar.properties.isAlphabetic {
            var end = pos + 1
            while end < chars.count, chars[end] == "_" || chars[end].properties.isAlphabetic || isDigit(chars[end]) {
                end += 1
            }
            return (.name(string(pos, end)), end)
        }
        if scalar == "'" || scalar == "\"" { return try scanString(at: pos) }
        for symbol in Self.operators where matches(symbol, at: pos) {
            return (.op(symbol), pos + symbol.unicodeScalars.count)
        }
        throw syntaxError("unexpected char '\(Character(scalar))'", at: pos)
    }

    private func scanNumber(at pos: Int) throws(ChatTemplateError) -> (TemplateToken.Kind, Int) {
        var end = digitsEnd(pos)
        var isFloat = false
        if end + 1 < chars.count, chars[end] == ".", isDigit(chars[end + 1]) {
            isFloat = true
            end = digitsEnd(end + 1)
        }
        if end < chars.count, chars[end] == "e" || chars[end] == "E" {
            var exponent = end + 1
            if exponent < chars.count, chars[exponent] == "+" || chars[exponent] == "-" { exponent += 1 }
            if exponent < chars.count, isDigit(chars[exponent]) {
                isFloat = true
                end = digitsEnd(exponent)
            }
        }
        let text = String(string(pos, end).filter { $0 != "_" })
        if isFloat {
            guard let value = Double(text) else { throw syntaxError("invalid number '\(text)'", at: pos) }
            return (.float(value), end)
        }
        guard let value = Int(text) else { throw syntaxError("integer '\(text)' is too large", at: pos) }
        return (.integer(value), end)
    }

    private func digitsEnd(_ start: Int) -> Int {
        var end = start
        while end < chars.count, isDigit(chars[end]) || (chars[end] == "_" && end + 1 < chars.count && isDigit(chars[end + 1])) {
            end += 1
        }
        return end
    }

    /// A quoted string with Python's `unicode-escape` rules (what Jinja applies).
    private func scanString(at pos: Int) throws(ChatTemplateError) -> (TemplateToken.Kind, Int) {
        let quote = chars[pos]
        var index = pos + 1
        var out = String.UnicodeScalarView()
        while index < chars.count {
            let scalar = chars[index]
            if scalar == quote { return (.string(String(out)), index + 1) }
            guard scalar == "\\", index + 1 < chars.count else {
                out.append(scalar)
                index += 1
                continue
            }
            let escaped = chars[index + 1]
            index += 2
            switch escaped {
            case "\n": break
            case "\\": out.append("\\")
            case "'": out.append("'")
            case "\"": out.append("\"")
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "a": out.append("\u{07}")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "v": out.append("\u{0B}")
            case "0"..."7":
                var value = Int(escaped.value - 48)
                var digits = 1
                while digits < 3, index < chars.count, ("0"..."7").contains(chars[index]) {
                    value = value * 8 + Int(chars[index].value - 48)
                    index += 1
                    digits += 1
                }
                out.append(Unicode.Scalar(UInt32(value))!)
            case "x", "u", "U":
                let width = escaped == "x" ? 2 : escaped == "u" ? 4 : 8
                guard index + width <= chars.count,
                      let value = UInt32(string(index, index + width), radix: 16),
                      let decoded = Unicode.Scalar(value)
                else { throw syntaxError("truncated \\\(escaped) escape in string", at: index - 2) }
                out.append(decoded)
                index += width
            default:
                out.append("\\")
                out.append(escaped)
            }
        }
        throw syntaxError("unterminated string", at: pos)
    }

    // MARK: - Helpers

    private func matches(_ literal: String, at pos: Int) -> Bool {
        var index = pos
        for scalar in literal.unicodeScalars {
            guard index < chars.count, chars[index] == scalar else { return false }
            index += 1
        }
        return true
    }

    private func skipSpaces(_ start: Int) -> Int {
        var index = start
        while index < chars.count, PythonString.isWhitespace(chars[index]) { index += 1 }
        return index
    }

    private func string(_ start: Int, _ end: Int) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: chars[start..<end])
        return String(view)
    }

    private func isDigit(_ scalar: Unicode.Scalar) -> Bool { ("0"..."9").contains(scalar) }

    private func location(_ pos: Int) -> (line: Int, column: Int) {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let mid = (low + high + 1) / 2
            if lineStarts[mid] <= pos { low = mid } else { high = mid - 1 }
        }
        return (low + 1, pos - lineStarts[low] + 1)
    }

    private func syntaxError(_ message: String, at pos: Int) -> ChatTemplateError {
        let (line, column) = location(pos)
        return .syntax(message: message, line: line, column: column)
    }
}
