/// The functions a template can call by name: Hugging Face's `raise_exception` and
/// `strftime_now`, and Jinja's `namespace`, `range` and `dict`.
extension TemplateInterpreter {
    static let globalFunctions: Set<String> = ["raise_exception", "strftime_now", "namespace", "range", "dict"]

    func callGlobal(
        _ name: String, _ positional: [ChatTemplateValue], _ keyword: ChatTemplateObject, line: Int
    ) throws(ChatTemplateError) -> ChatTemplateValue {
        switch name {
        case "raise_exception":
            throw .templateRaised(try str(positional.first ?? keyword["message"] ?? .string("")))
        case "strftime_now":
            guard case let .string(format)? = positional.first ?? keyword["format"] else {
                throw .runtime(message: "strftime_now needs a format string", line: line)
            }
            return .string(StrftimeFormatter.format(format, secondsSince1970: secondsSince1970))
        case "namespace", "dict":
            var object = ChatTemplateObject()
            if case let .object(initial)? = positional.first { object = initial }
            for (key, value) in keyword.pairs { object[key] = try checkNesting(value) }
            if name == "dict" { return .object(object) }
            namespaces.append(object)
            return .namespace(ChatTemplateNamespace(id: namespaces.count - 1))
        case "range":
            let bounds = positional.compactMap(\.integerValue)
            guard bounds.count == positional.count, (1...3).contains(bounds.count) else {
                throw .runtime(message: "range() takes 1 to 3 integer arguments", line: line)
            }
            let start = bounds.count == 1 ? 0 : bounds[0]
            let stop = bounds.count == 1 ? bounds[0] : bounds[1]
            let step = bounds.count == 3 ? bounds[2] : 1
            guard step != 0 else { throw .runtime(message: "range() arg 3 must not be zero", line: line) }
            let length = step > 0 ? max(0, (stop - start + step - 1) / step) : max(0, (start - stop - step - 1) / -step)
            guard length <= limits.maxRangeLength else {
                throw .limitExceeded("range of \(length) items (at most \(limits.maxRangeLength)) at line \(line)")
            }
            return .array((0..<length).map { .int(start + $0 * step) })
        default:
            if lookup(name) != .undefined {
                throw .runtime(message: "'\(name)' is not callable", line: line)
            }
            throw .unsupported(what: "function '\(name)'", line: line)
        }
    }
}
