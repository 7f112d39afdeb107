/// Jinja's built-in filters that chat templates use, with Hugging Face's `tojson`.
extension TemplateInterpreter {
    func applyFilter(
        _ name: String, to value: ChatTemplateValue, _ positional: [ChatTemplateValue],
        _ keyword: ChatTemplateObject, line: Int
    ) throws(ChatTemplateError) -> ChatTemplateValue {
        func argument(_ index: Int, _ key: String) -> ChatTemplateValue? {
            index < positional.count ? positional[index] : keyword[key]
        }

        switch name {
        case "trim":
            var characters: String?
            if case let .string(text)? = argument(0, "chars") { characters = text }
            return .string(PythonString.strip(try str(value), characters: characters, leading: true, trailing: true))
        case "length", "count":
            switch value {
            case let .string(text): return .int(text.unicodeScalars.count)
            case let .array(items): return .int(items.count)
            case let .object(object): return .int(object.count)
            case .undefined: return .int(0)
            default: throw .runtime(message: "object of type '\(value.typeName)' has no len()", line: line)
            }
        case "tojson":
            return .string(try toJSON(value, argument, line: line))
        case "upper": return .string(try str(value).uppercased())
        case "lower": return .string(try str(value).lowercased())
        case "title": return .string(PythonString.jinjaTitle(try str(value)))
        case "capitalize": return .string(PythonString.capitalize(try str(value)))
        case "string": return .string(try str(value))
        case "safe": return value
        case "escape", "e":
            var escaped = ""
            for character in try str(value) {
                switch character {
                case "&": escaped += "&amp;"
                case "<": escaped += "&lt;"
                case ">": escaped += "&gt;"
                case "\"": escaped += "&#34;"
                case "'": escaped += "&#39;"
                default: escaped.append(character)
                }
            }
            return .string(escaped)
        case "default", "d":
            let useWhenFalsy = argument(1, "boolean")?.isTruthy ?? false
            if value == .undefined || (useWhenFalsy && !value.isTruthy) {
                return argument(0, "default_value") ?? .string("")
            }
            return value
        case "first", "last":
            let items = try iterate(value, line: line)
            return (name == "first" ? items.first : items.last) ?? .undefined
        case "join":
            var separator = ""
            if case let .string(text)? = argument(0, "d") { separator = text }
            var items = try iterate(value, line: line)
            if let path = argument(1, "attribute") {
                var mapped: [ChatTemplateValue] = []
                for item in items { mapped.append(try attributePath(path, of: item, line: line)) }
                items = mapped
            }
            var pieces: [String] = []
            var total = 0
            for item in items {
                let piece = try str(item)
                total += piece.utf8.count + separator.utf8.count
                try checkSize(total)
                pieces.append(piece)
            }
            return .string(pieces.joined(separator: separator))
        case "int":
            return toInt(value) ?? argument(0, "default") ?? .int(0)
        case "float":
            if let number = value.numericValue { return .double(number) }
            if case let .string(text) = value, let number = Double(PythonString.strip(text, characters: nil, leading: true, trailing: true)) {
                return .double(number)
            }
            return argument(0, "default") ?? .double(0)
        case "list":
            return .array(try iterate(value, line: line))
        case "items":
            switch value {
            case let .object(object): return .array(object.pairs.map { .array([.string($0.key), $0.value]) })
            case .undefined: return .array([])
            default: throw .runtime(message: "items filter needs a mapping, got '\(value.typeName)'", line: line)
            }
        case "replace":
            guard case let .string(old)? = argument(0, "old"), case let .string(new)? = argument(1, "new") else {
                throw .runtime(message: "replace filter needs two strings", line: line)
            }
            let text = try str(value)
            let count = argument(2, "count")?.integerValue ?? -1
            try checkReplacementSize(text, old, new, count: count)
            return .string(PythonString.replace(text, old, new, count: count))
        case "selectattr", "rejectattr", "select", "reject":
            return .array(try select(name, value, positional, line: line))
        case "map":
            return .array(try map(value, positional, keyword, line: line))
        case "indent":
            return .string(try indent(try str(value), argument, line: line))
        case "reverse":
            if case let .string(text) = value { return .string(PythonString.make(text.unicodeScalars.reversed())) }
            return .array(try iterate(value, line: line).reversed())
        case "abs":
            switch value {
            case let .int(number) where number != Int.min: return .int(abs(number))
            case let .double(number): return .double(abs(number))
            case let .bool(flag): return .int(flag ? 1 : 0)
            default: throw .runtime(message: "bad operand type for abs(): '\(value.typeName)'", line: line)
            }
        default:
            throw .unsupported(what: "filter '\(name)'", line: line)
        }
    }

    /// Throws when a string being built would exceed the output cap (it could never be printed).
    func checkSize(_ byteCount: Int) throws(ChatTemplateError) {
        guard byteCount <= limits.maxOutputBytes else {
            throw .limitExceeded("string of more than \(limits.maxOutputBytes) bytes")
        }
    }

    /// `width` spaces (none for a negative width), refused before they are built when they could never be printed.
    func spaces(_ width: Int) throws(ChatTemplateError) -> String {
        try checkSize(width)
        return String(repeating: " ", count: max(0, width))
    }

    func checkReplacementSize(_ text: String, _ old: String, _ new: String, count: Int) throws(ChatTemplateError) {
        guard new.utf8.count > old.utf8.count else { return }
        var occurrences = old.isEmpty ? text.unicodeScalars.count + 1
            : PythonString.split(text, separator: old, maxSplit: -1).count - 1
        if count >= 0 { occurrences = min(occurrences, count) }
        let (growth, overflow) = occurrences.multipliedReportingOverflow(by: new.utf8.count - old.utf8.count)
        guard !overflow else { throw .limitExceeded("string of more than \(limits.maxOutputBytes) bytes") }
        try checkSize(text.utf8.count + growth)
    }

    /// Hugging Face's `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
    private func toJSON(
        _ value: ChatTemplateValue, _ argument: (Int, String) -> ChatTemplateValue?, line: Int
    ) throws(ChatTemplateError) -> String {
        var indent: String?
        switch argument(1, "indent") {
        case let .int(width)?: indent = try spaces(width)
        case let .string(text)?: indent = text
        case nil, .none?: indent = nil
        case let other?: throw .runtime(message: "tojson indent must be an int or string, not \(other.typeName)", line: line)
        }
        var separators: (String, String)?
        if case let .array(pair)? = argument(2, "separators") {
            guard pair.count == 2, case let .string(item) = pair[0], case let .string(key) = pair[1] else {
                throw .runtime(message: "tojson separators must be two strings", line: line)
            }
            separators = (item, key)
        }
        return try value.jsonString(
            ensureASCII: argument(0, "ensure_ascii")?.isTruthy ?? false, indent: indent, separators: separators,
            sortKeys: argument(3, "sort_keys")?.isTruthy ?? false, limit: limits.maxOutputBytes, line: line)
    }

    private func toInt(_ value: ChatTemplateValue) -> ChatTemplateValue? {
        switch value {
        case .int, .bool: return value.integerValue.map { .int($0) }
        case let .double(number):
            guard number.isFinite, abs(number) < 9.2e18 else { return nil }
            return .int(Int(number))
        case let .string(text):
            let trimmed = PythonString.strip(text, characters: nil, leading: true, trailing: true)
            if let number = Int(trimmed.filter { $0 != "_" }) { return .int(number) }
            if let number = Double(trimmed), number.isFinite, abs(number) < 9.2e18 { return .int(Int(number)) }
            return nil
        default:
            return nil
        }
    }

    /// `a.b.0`-style paths, as `selectattr`/`map(attribute=)` accept.
    private func attributePath(_ path: ChatTemplateValue, of item: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        guard case let .string(text) = path else { return try self.item(path, of: item, line: line) }
        var current = item
        for part in text.split(separator: ".", omittingEmptySubsequences: false) {
            if current == .undefined { return .undefined }
            if let index = Int(part) {
                current = try self.item(.int(index), of: current, line: line)
            } else {
                current = try self.item(.string(String(part)), of: current, line: line)
            }
        }
        return current
    }

    private func select(_ name: String, _ value: ChatTemplateValue, _ positional: [ChatTemplateValue], line: Int) throws(ChatTemplateError) -> [ChatTemplateValue] {
        let byAttribute = name.hasSuffix("attr")
        let keep = name.hasPrefix("select")
        var arguments = positional
        var path: ChatTemplateValue?
        if byAttribute {
            guard !arguments.isEmpty else { throw .runtime(message: "\(name) needs an attribute name", line: line) }
            path = arguments.removeFirst()
        }
        var testName: String?
        if !arguments.isEmpty {
            guard case let .string(test) = arguments.removeFirst() else {
                throw .runtime(message: "\(name) needs a test name", line: line)
            }
            testName = test
        }
        var result: [ChatTemplateValue] = []
        for item in try iterate(value, line: line) {
            let subject = try path.map { (path) throws(ChatTemplateError) in try attributePath(path, of: item, line: line) } ?? item
            let passes = try testName.map { (test) throws(ChatTemplateError) in try applyTest(test, to: subject, arguments, line: line) }
                ?? subject.isTruthy
            if passes == keep { result.append(item) }
        }
        return result
    }

    private func map(
        _ value: ChatTemplateValue, _ positional: [ChatTemplateValue], _ keyword: ChatTemplateObject, line: Int
    ) throws(ChatTemplateError) -> [ChatTemplateValue] {
        let items = try iterate(value, line: line)
        if let path = keyword["attribute"] {
            var result: [ChatTemplateValue] = []
            for item in items {
                let mapped = try attributePath(path, of: item, line: line)
                result.append(mapped == .undefined ? keyword["default"] ?? .undefined : mapped)
            }
            return result
        }
        guard case let .string(filter)? = positional.first else {
            throw .runtime(message: "map needs a filter name or attribute=", line: line)
        }
        var result: [ChatTemplateValue] = []
        for item in items {
            result.append(try applyFilter(filter, to: item, Array(positional.dropFirst()), ChatTemplateObject(), line: line))
        }
        return result
    }

    /// Jinja's `indent(width=4, first=False, blank=False)`.
    private func indent(_ text: String, _ argument: (Int, String) -> ChatTemplateValue?, line: Int) throws(ChatTemplateError) -> String {
        var prefix = "    "
        switch argument(0, "width") {
        case let .int(width)?: prefix = try spaces(width)
        case let .string(custom)?: prefix = custom
        default: break
        }
        let indentFirst = argument(1, "first")?.isTruthy ?? false
        let indentBlank = argument(2, "blank")?.isTruthy ?? false
        var lines = PythonString.split(text + "\n", separator: "\n", maxSplit: -1)
        lines.removeLast()
        try checkSize(text.utf8.count + (lines.count + 1) * prefix.utf8.count)
        guard !lines.isEmpty else { return indentFirst ? prefix : "" }
        var out = lines[0]
        for line in lines.dropFirst() {
            out += "\n" + (indentBlank || !line.isEmpty ? prefix + line : line)
        }
        return indentFirst ? prefix + out : out
    }
}
