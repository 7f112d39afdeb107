/// Python semantics of values, which Jinja inherits: truthiness, `str()`, `repr()`, `==`, ordering.
extension ChatTemplateValue {
    var isTruthy: Bool {
        switch self {
        case .none, .undefined: return false
        case let .bool(value): return value
        case let .int(value): return value != 0
        case let .double(value): return value != 0
        case let .string(value): return !value.isEmpty
        case let .array(items): return !items.isEmpty
        case let .object(object): return !object.isEmpty
        case .namespace: return true
        }
    }

    /// Python's `type(x).__name__`, for error messages.
    var typeName: String {
        switch self {
        case .none: return "NoneType"
        case .undefined: return "Undefined"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .object: return "dict"
        case .namespace: return "Namespace"
        }
    }

    /// `str(x)`, which `{{ x }}` prints: `None`, `True`, `1.0`, `['a', 1]`; undefined prints nothing.
    var pythonString: String {
        if case let .string(value) = self { return value }
        return pythonRepr
    }

    /// `repr(x)`: strings quoted the way Python quotes them, lists and dicts in Python syntax.
    var pythonRepr: String {
        var out = ""
        _ = writeRepr(into: &out, limit: Int.max)
        return out
    }

    /// `str(x)`, refusing to build more than `limit` bytes: nested lists can share storage, so a
    /// small value can print as an enormous string.
    func pythonString(limit: Int) throws(ChatTemplateError) -> String {
        if case let .string(value) = self { return value }
        var out = ""
        guard writeRepr(into: &out, limit: limit) else {
            throw .limitExceeded("value renders to more than \(limit) bytes")
        }
        return out
    }

    /// Appends `repr(self)`; false once `out` grows past `limit`.
    private func writeRepr(into out: inout String, limit: Int) -> Bool {
        switch self {
        case .none: out += "None"
        case .undefined: break
        case let .bool(value): out += value ? "True" : "False"
        case let .int(value): out += String(value)
        case let .double(value): out += pythonFloatRepr(value)
        case let .string(value): out += pythonStringRepr(value)
        case let .array(items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += ", " }
                guard item.writeRepr(into: &out, limit: limit) else { return false }
            }
            out += "]"
        case let .object(object):
            out += "{"
            for (index, pair) in object.pairs.enumerated() {
                if index > 0 { out += ", " }
                out += pythonStringRepr(pair.key) + ": "
                guard pair.value.writeRepr(into: &out, limit: limit) else { return false }
            }
            out += "}"
        case .namespace: out += "<Namespace>"
        }
        return out.utf8.count <= limit
    }

    /// The number as a Double when it is a bool, int or float (Python treats bools as ints).
    var numericValue: Double? {
        switch self {
        case let .bool(value): return value ? 1 : 0
        case let .int(value): return Double(value)
        case let .double(value): return value
        default: return nil
        }
    }

    var integerValue: Int? {
        switch self {
        case let .bool(value): return value ? 1 : 0
        case let .int(value): return value
        default: return nil
        }
    }

    /// Python `==`: numbers compare by value across int, float and bool; strings by code points;
    /// dicts ignore key order. Jinja's undefined equals only undefined.
    func pythonEquals(_ other: ChatTemplateValue) -> Bool {
        switch (self, other) {
        case (.none, .none), (.undefined, .undefined): return true
        case let (.string(a), .string(b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case let (.array(a), .array(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.pythonEquals($1) }
        case let (.object(a), .object(b)):
            guard a.count == b.count else { return false }
            for (key, value) in a.pairs {
                guard let otherValue = b[key], value.pythonEquals(otherValue) else { return false }
            }
            return true
        case let (.namespace(a), .namespace(b)): return a == b
        default:
            if let integerA = integerValue, let integerB = other.integerValue { return integerA == integerB }
            if let numberA = numericValue, let numberB = other.numericValue { return numberA == numberB }
            return false
        }
    }

    /// Python ordering (`<`), or nil when Python would raise TypeError.
    func pythonLess(_ other: ChatTemplateValue) -> Bool? {
        switch (self, other) {
        case let (.string(a), .string(b)):
            return a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars)
        case let (.array(a), .array(b)):
            for (x, y) in zip(a, b) where !x.pythonEquals(y) { return x.pythonLess(y) }
            return a.count < b.count
        default:
            if let integerA = integerValue, let integerB = other.integerValue { return integerA < integerB }
            if let numberA = numericValue, let numberB = other.numericValue { return numberA < numberB }
            return nil
        }
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, fixed notation for exponents in
/// -4..<16 (with ".0" when integral), otherwise `1e+16` style.
func pythonFloatRepr(_ value: Double) -> String {
    if value.isNaN { return "nan" }
    if value.isInfinite { return value < 0 ? "-inf" : "inf" }
    if value == 0 { return value.sign == .minus ? "-0.0" : "0.0" }
    // Swift's description also prints the shortest round-trip digits; only the layout differs.
    var text = "\(value.magnitude)"
    var exponent = 0
    if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
        exponent = Int(text[text.index(after: e)...])!
        text = String(text[..<e])
    }
    var digits = text.filter { $0 != "." }
    let pointIndex = text.firstIndex(of: ".").map { text.distance(from: text.startIndex, to: $0) } ?? text.count
    exponent += pointIndex - 1
    let leadingZeros = digits.prefix { $0 == "0" }.count
    digits.removeFirst(leadingZeros)
    exponent -= leadingZeros
    while digits.count > 1, digits.last == "0" { digits.removeLast() }
    let sign = value < 0 ? "-" : ""
    if exponent < -4 || exponent >= 16 {
        var mantissa = String(digits.prefix(1))
        if digits.count > 1 { mantissa += "." + digits.dropFirst() }
        let exponentDigits = String(abs(exponent))
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + (exponentDigits.count < 2 ? "0" : "") + exponentDigits
    }
    if exponent < 0 {
        return sign + "0." + String(repeating: "0", count: -exponent - 1) + digits
    }
    if digits.count <= exponent + 1 {
        return sign + digits + String(repeating: "0", count: exponent + 1 - digits.count) + ".0"
    }
    let integerPart = digits.prefix(exponent + 1)
    return sign + integerPart + "." + digits.dropFirst(exponent + 1)
}

/// Python's `repr(str)`.
func pythonStringRepr(_ value: String) -> String {
    let quote: Unicode.Scalar = value.contains("'") && !value.contains("\"") ? "\"" : "'"
    var out = String.UnicodeScalarView()
    out.append(quote)
    for scalar in value.unicodeScalars {
        switch scalar {
        case quote, "\\":
            out.append("\\")
            out.append(scalar)
        case "\n": out.append(contentsOf: "\\n".unicodeScalars)
        case "\r": out.append(contentsOf: "\\r".unicodeScalars)
        case "\t": out.append(contentsOf: "\\t".unicodeScalars)
        default:
            if isPythonPrintable(scalar) {
                out.append(scalar)
            } else {
                let hex = String(scalar.value, radix: 16)
                let (prefix, width) = scalar.value < 0x100 ? ("\\x", 2) : scalar.value < 0x10000 ? ("\\u", 4) : ("\\U", 8)
                out.append(contentsOf: (prefix + String(repeating: "0", count: width - hex.count) + hex).unicodeScalars)
            }
        }
    }
    out.append(quote)
    return String(out)
}

/// Python's `str.isprintable()` for one code point: not a control, format, separator (other than
/// the ASCII space), surrogate, private-use or unassigned character.
func isPythonPrintable(_ scalar: Unicode.Scalar) -> Bool {
    if scalar == " " { return true }
    switch scalar.properties.generalCategory {
    case .control, .format, .surrogate, .privateUse, .unassigned,
         .spaceSeparator, .lineSeparator, .paragraphSeparator:
        return false
    default:
        return true
    }
}
