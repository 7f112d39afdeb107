/// Jinja's tests (`x is defined`, `x is string`, `x is divisibleby 3`, ...).
extension TemplateInterpreter {
    func applyTest(_ name: String, to value: ChatTemplateValue, _ arguments: [ChatTemplateValue], line: Int) throws(ChatTemplateError) -> Bool {
        func operand() throws(ChatTemplateError) -> ChatTemplateValue {
            guard let first = arguments.first else { throw .runtime(message: "test '\(name)' needs an argument", line: line) }
            return first
        }
        func order(_ strict: Bool, _ forward: Bool) throws(ChatTemplateError) -> Bool {
            let other = try operand()
            let (a, b) = forward ? (value, other) : (other, value)
            guard let less = a.pythonLess(b) else {
                throw .runtime(message: "cannot compare '\(value.typeName)' and '\(other.typeName)'", line: line)
            }
            return strict ? less : less || a.pythonEquals(b)
        }

        switch name {
        case "defined": return value != .undefined
        case "undefined": return value == .undefined
        case "none": return value == .none
        case "string": if case .string = value { return true } else { return false }
        case "mapping": if case .object = value { return true } else { return false }
        case "number": return value.numericValue != nil
        case "integer": if case .int = value { return true } else { return false }
        case "float": if case .double = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "true": return value == .bool(true)
        case "false": return value == .bool(false)
        case "iterable", "sequence":
            switch value {
            case .string, .array, .object, .undefined: return true
            default: return false
            }
        case "callable": return false
        case "odd", "even":
            guard let number = value.integerValue else {
                throw .runtime(message: "test '\(name)' needs an integer, got '\(value.typeName)'", line: line)
            }
            return (abs(number % 2) == 1) == (name == "odd")
        case "divisibleby":
            guard let number = value.integerValue, let divisor = try operand().integerValue, divisor != 0 else {
                throw .runtime(message: "divisibleby needs integers and a non-zero divisor", line: line)
            }
            return number % divisor == 0
        case "equalto", "eq", "==": return value.pythonEquals(try operand())
        case "ne", "!=": return !value.pythonEquals(try operand())
        case "lt", "<": return try order(true, true)
        case "le", "<=": return try order(false, true)
        case "gt", ">": return try order(true, false)
        case "ge", ">=": return try order(false, false)
        case "in": return try contains(try operand(), value, line: line)
        case "sameas":
            let other = try operand()
            switch (value, other) {
            case (.none, .none), (.undefined, .undefined): return true
            case let (.bool(a), .bool(b)): return a == b
            case let (.int(a), .int(b)): return a == b
            case let (.namespace(a), .namespace(b)): return a == b
            default: return false
            }
        case "lower", "upper":
            guard case let .string(text) = value else { return false }
            return name == "lower" ? text == text.lowercased() : text == text.uppercased()
        default:
            throw .unsupported(what: "test '\(name)'", line: line)
        }
    }
}
