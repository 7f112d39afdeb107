/// Python methods templates call on strings (`content.strip()`) and dicts (`tool.items()`).
extension TemplateInterpreter {
    func callMethod(
        _ name: String, on receiver: ChatTemplateValue, _ positional: [ChatTemplateValue],
        _ keyword: ChatTemplateObject, line: Int
    ) throws(ChatTemplateError) -> ChatTemplateValue {
        func argument(_ index: Int, _ key: String) -> ChatTemplateValue? {
            let value = index < positional.count ? positional[index] : keyword[key]
            return value == ChatTemplateValue.none ? nil : value
        }
        func string(_ index: Int, _ key: String) throws(ChatTemplateError) -> String? {
            guard let value = argument(index, key) else { return nil }
            guard case let .string(text) = value else {
                throw .runtime(message: "\(receiver.typeName).\(name)() argument must be str, not \(value.typeName)", line: line)
            }
            return text
        }

        switch receiver {
        case let .string(text):
            switch name {
            case "strip", "lstrip", "rstrip":
                return .string(PythonString.strip(text, characters: try string(0, "chars"),
                                                  leading: name != "rstrip", trailing: name != "lstrip"))
            case "split":
                let maxSplit = argument(1, "maxsplit")?.integerValue ?? -1
                let separator = try string(0, "sep")
                if separator == "" { throw .runtime(message: "split(): empty separator", line: line) }
                return .array(PythonString.split(text, separator: separator, maxSplit: maxSplit).map { .string($0) })
            case "startswith", "endswith":
                var candidates: [String] = []
                switch argument(0, name == "startswith" ? "prefix" : "suffix") {
                case let .string(candidate): candidates = [candidate]
                case let .array(items):
                    for item in items {
                        guard case let .string(candidate) = item else { continue }
                        candidates.append(candidate)
                    }
                default:
                    throw .runtime(message: "\(name) first arg must be str or a tuple of str", line: line)
                }
                let scalars = Array(text.unicodeScalars)
                return .bool(candidates.contains { candidate in
                    let needle = Array(candidate.unicodeScalars)
                    return name == "startswith" ? scalars.starts(with: needle) : scalars.reversed().starts(with: needle.reversed())
                })
            case "upper": return .string(text.uppercased())
            case "lower": return .string(text.lowercased())
            case "title": return .string(PythonString.title(text))
            case "capitalize": return .string(PythonString.capitalize(text))
            case "replace":
                guard let old = try string(0, "old"), let new = try string(1, "new") else {
                    throw .runtime(message: "replace() takes at least 2 arguments", line: line)
                }
                let count = argument(2, "count")?.integerValue ?? -1
                try checkReplacementSize(text, old, new, count: count)
                return .string(PythonString.replace(text, old, new, count: count))
            case "find", "count":
                guard let needle = try string(0, "sub") else {
                    throw .runtime(message: "\(name)() takes at least 1 argument", line: line)
                }
                let parts = PythonString.split(text, separator: needle.isEmpty ? nil : needle, maxSplit: name == "find" ? 1 : -1)
                if name == "count" { return .int(needle.isEmpty ? text.unicodeScalars.count + 1 : parts.count - 1) }
                if needle.isEmpty { return .int(0) }
                return .int(parts.count > 1 ? parts[0].unicodeScalars.count : -1)
            case "join":
                var pieces: [String] = []
                for item in try iterate(argument(0, "iterable") ?? .array([]), line: line) {
                    guard case let .string(piece) = item else {
                        throw .runtime(message: "sequence item: expected str instance, \(item.typeName) found", line: line)
                    }
                    pieces.append(piece)
                }
                try checkSize(pieces.reduce(0) { $0 + $1.utf8.count + text.utf8.count })
                return .string(pieces.joined(separator: text))
            case "splitlines":
                var lines = PythonString.split(text, separator: "\n", maxSplit: -1)
                if lines.last == "" { lines.removeLast() }
                return .array(lines.map { .string($0) })
            case "isdigit":
                return .bool(!text.isEmpty && text.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal })
            case "isspace":
                return .bool(!text.isEmpty && text.unicodeScalars.allSatisfy(PythonString.isWhitespace))
            default: break
            }
        case let .object(object):
            switch name {
            case "items": return .array(object.pairs.map { .array([.string($0.key), $0.value]) })
            case "keys": return .array(object.keys.map { .string($0) })
            case "values": return .array(object.pairs.map(\.value))
            case "get":
                guard case let .string(key)? = positional.first else { return argument(1, "default") ?? .none }
                return object[key] ?? (positional.count > 1 ? positional[1] : .none)
            default: break
            }
        case .undefined:
            throw .runtime(message: "undefined value has no attribute '\(name)'", line: line)
        default:
            break
        }
        throw .unsupported(what: "method '\(receiver.typeName).\(name)'", line: line)
    }
}
