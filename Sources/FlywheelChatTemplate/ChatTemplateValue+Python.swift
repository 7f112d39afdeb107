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
        _ = writeRepr(into: &out, limit: Int.max, depth: 0)
        return out
    }

    /// `str(x)`, refusing to build more than `limit` bytes: nested lists can share storage, so a
    /// small value can print as an enormous string.
    func pythonString(limit: Int) throws(ChatTemplateError) -> String {
        if case let .string(value) = self { return value }
        var out = ""
        guard writeRepr(into: &out, limit: limit, depth: 0) else {
            throw .limitExceeded("value renders to more than \(limit) bytes or nests too deeply")
        }
        return out
    }

    /// Appends `repr(self)`; false once `out` grows past `limit` or nesting passes the JSON depth
    /// bound (which keeps recursion off the end of small thread stacks).
    private func writeRepr(into out: inout String, limit: Int, depth: Int) -> Bool {
        guard depth < ChatTemplateValue.maxNestingDepth else { return false }
        switch self {
        case .none: out += "None"
        case .undefined: break
        case let .bool(value): out += value ? "True" : "False"
        case let .int(value): out += String(value)
        case let .double(value): out += PythonString.floatRepr(value)
        case let .string(value): out += PythonString.repr(value)
        case let .array(items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += ", " }
                guard item.writeRepr(into: &out, limit: limit, depth: depth + 1) else { return false }
            }
            out += "]"
        case let .object(object):
            out += "{"
            for (index, pair) in object.pairs.enumerated() {
                if index > 0 { out += ", " }
                out += PythonString.repr(pair.key) + ": "
                guard pair.value.writeRepr(into: &out, limit: limit, depth: depth + 1) else { return false }
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
