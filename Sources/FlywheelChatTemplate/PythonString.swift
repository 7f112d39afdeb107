/// Python `str` methods over Unicode code points, as templates call them.
enum PythonString {
    /// `strip`/`lstrip`/`rstrip`: whitespace, or any of `characters` when given.
    static func strip(_ text: String, characters: String?, leading: Bool, trailing: Bool) -> String {
        let scalars = Array(text.unicodeScalars)
        let set = characters.map { Set($0.unicodeScalars) }
        func drop(_ scalar: Unicode.Scalar) -> Bool { set?.contains(scalar) ?? isPythonWhitespace(scalar) }
        var start = 0
        var end = scalars.count
        if leading { while start < end, drop(scalars[start]) { start += 1 } }
        if trailing { while end > start, drop(scalars[end - 1]) { end -= 1 } }
        return make(scalars[start..<end])
    }

    /// `split(sep=None, maxsplit=-1)`.
    static func split(_ text: String, separator: String?, maxSplit: Int) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var parts: [String] = []
        guard let separator else {
            var index = 0
            while index < scalars.count {
                while index < scalars.count, isPythonWhitespace(scalars[index]) { index += 1 }
                guard index < scalars.count else { break }
                if maxSplit >= 0, parts.count == maxSplit {
                    var end = scalars.count
                    while end > index, isPythonWhitespace(scalars[end - 1]) { end -= 1 }
                    parts.append(make(scalars[index..<end]))
                    return parts
                }
                let start = index
                while index < scalars.count, !isPythonWhitespace(scalars[index]) { index += 1 }
                parts.append(make(scalars[start..<index]))
            }
            return parts
        }
        let needle = Array(separator.unicodeScalars)
        var start = 0
        var index = 0
        while index + needle.count <= scalars.count, maxSplit < 0 || parts.count < maxSplit {
            if scalars[index..<index + needle.count].elementsEqual(needle) {
                parts.append(make(scalars[start..<index]))
                index += needle.count
                start = index
            } else {
                index += 1
            }
        }
        parts.append(make(scalars[start...]))
        return parts
    }

    /// `replace(old, new, count=-1)`.
    static func replace(_ text: String, _ old: String, _ new: String, count: Int) -> String {
        let scalars = Array(text.unicodeScalars)
        let needle = Array(old.unicodeScalars)
        var out = String.UnicodeScalarView()
        var replaced = 0
        var index = 0
        if needle.isEmpty {
            for scalar in scalars {
                if count < 0 || replaced < count {
                    out.append(contentsOf: new.unicodeScalars)
                    replaced += 1
                }
                out.append(scalar)
            }
            if count < 0 || replaced < count { out.append(contentsOf: new.unicodeScalars) }
            return String(out)
        }
        while index < scalars.count {
            if (count < 0 || replaced < count), index + needle.count <= scalars.count,
               scalars[index..<index + needle.count].elementsEqual(needle) {
                out.append(contentsOf: new.unicodeScalars)
                index += needle.count
                replaced += 1
            } else {
                out.append(scalars[index])
                index += 1
            }
        }
        return String(out)
    }

    /// `str.title()`: a cased letter after an uncased character starts a word.
    static func title(_ text: String) -> String {
        var out = ""
        var previousCased = false
        for scalar in text.unicodeScalars {
            let character = String(scalar)
            let cased = scalar.properties.isCased
            out += previousCased ? character.lowercased() : character.uppercased()
            previousCased = cased
        }
        return out
    }

    /// Jinja's `title` filter: words start after whitespace, `-`, or an opening bracket.
    static func jinjaTitle(_ text: String) -> String {
        var out = ""
        var atWordStart = true
        for scalar in text.unicodeScalars {
            let isBoundary = isPythonWhitespace(scalar) || "-({[<".unicodeScalars.contains(scalar)
            if isBoundary {
                out.unicodeScalars.append(scalar)
                atWordStart = true
            } else {
                out += atWordStart ? String(scalar).uppercased() : String(scalar).lowercased()
                atWordStart = false
            }
        }
        return out
    }

    /// `str.capitalize()`: first character upper case, the rest lower case.
    static func capitalize(_ text: String) -> String {
        guard let first = text.unicodeScalars.first else { return "" }
        return String(first).uppercased() + make(text.unicodeScalars.dropFirst()).lowercased()
    }

    static func make<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }
}
