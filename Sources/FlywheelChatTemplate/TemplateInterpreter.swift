import Foundation

/// Executes a parsed template against a context. One instance per render; not shared.
///
/// Scopes follow Jinja: the context, then the template's top level, then one frame per `for`
/// iteration or macro call. `set` writes to the innermost frame, so a `set` inside a loop body is
/// gone after the iteration (templates use `namespace` to carry state out of loops).
final class TemplateInterpreter {
    enum Flow {
        case normal, breakLoop, continueLoop
    }

    let limits: ChatTemplateLimits
    let secondsSince1970: Int
    private var frames: [[String: ChatTemplateValue]]
    private var macros: [String: TemplateMacro] = [:]
    var namespaces: [ChatTemplateObject] = []
    private var producedBytes = 0
    private var iterations = 0
    private var callDepth = 0
    private var inspectedNodes = 0

    init(context: [String: ChatTemplateValue], limits: ChatTemplateLimits, secondsSince1970: Int) {
        self.frames = [context, [:]]
        self.limits = limits
        self.secondsSince1970 = secondsSince1970
    }

    func render(_ body: [TemplateStatement]) throws(ChatTemplateError) -> String {
        var out = ""
        _ = try execute(body, into: &out)
        return out
    }

    // MARK: - Statements

    private func execute(_ statements: [TemplateStatement], into out: inout String) throws(ChatTemplateError) -> Flow {
        for statement in statements {
            let flow = try execute(statement, into: &out)
            if flow != .normal { return flow }
        }
        return .normal
    }

    private func execute(_ statement: TemplateStatement, into out: inout String) throws(ChatTemplateError) -> Flow {
        switch statement {
        case let .text(text):
            try emit(text, into: &out)
        case let .output(expression):
            try emit(try str(try evaluate(expression)), into: &out)
        case let .ifChain(branches, otherwise):
            for branch in branches where try evaluate(branch.condition).isTruthy {
                return try execute(branch.body, into: &out)
            }
            return try execute(otherwise, into: &out)
        case let .forLoop(loop):
            return try executeFor(loop, into: &out)
        case let .set(targets, expression, line):
            let value = try evaluate(expression)
            for (name, item) in try unpack(value, into: targets, line: line) { frames[frames.count - 1][name] = item }
        case let .setAttribute(object, attribute, expression, line):
            guard case let .namespace(namespace) = lookup(object) else {
                throw .runtime(message: "cannot assign attribute '\(attribute)' on '\(object)', which is not a namespace", line: line)
            }
            namespaces[namespace.id][attribute] = try evaluate(expression)
        case let .setBlock(target, body):
            var captured = ""
            _ = try execute(body, into: &captured)
            frames[frames.count - 1][target] = .string(captured)
        case let .macro(macro):
            macros[macro.name] = macro
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        case let .generation(body):
            return try execute(body, into: &out)
        }
        return .normal
    }

    private func emit(_ text: String, into out: inout String) throws(ChatTemplateError) {
        producedBytes += text.utf8.count
        guard producedBytes <= limits.maxOutputBytes else {
            throw .limitExceeded("output larger than \(limits.maxOutputBytes) bytes")
        }
        out += text
    }

    private func executeFor(_ loop: TemplateForLoop, into out: inout String) throws(ChatTemplateError) -> Flow {
        var items = try iterate(try evaluate(loop.iterable), line: loop.line)
        if let condition = loop.condition {
            var kept: [ChatTemplateValue] = []
            for item in items {
                try countIteration()
                frames.append(Dictionary(uniqueKeysWithValues: try unpack(item, into: loop.targets, line: loop.line)))
                defer { frames.removeLast() }
                if try evaluate(condition).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty {
            return try execute(loop.otherwise, into: &out)
        }
        for (index, item) in items.enumerated() {
            try countIteration()
            var frame = Dictionary(uniqueKeysWithValues: try unpack(item, into: loop.targets, line: loop.line))
            var info = ChatTemplateObject()
            info["index"] = .int(index + 1)
            info["index0"] = .int(index)
            info["revindex"] = .int(items.count - index)
            info["revindex0"] = .int(items.count - index - 1)
            info["first"] = .bool(index == 0)
            info["last"] = .bool(index == items.count - 1)
            info["length"] = .int(items.count)
            info["previtem"] = index > 0 ? items[index - 1] : .undefined
            info["nextitem"] = index + 1 < items.count ? items[index + 1] : .undefined
            info["depth"] = .int(1)
            info["depth0"] = .int(0)
            frame["loop"] = .object(info)
            frames.append(frame)
            let flow = try execute(loop.body, into: &out)
            frames.removeLast()
            if flow == .breakLoop { break }
        }
        return .normal
    }

    private func countIteration() throws(ChatTemplateError) {
        iterations += 1
        guard iterations <= limits.maxLoopIterations else {
            throw .limitExceeded("more than \(limits.maxLoopIterations) loop iterations")
        }
    }

    /// The items a `for` visits: list elements, dict keys, string characters; undefined is empty.
    func iterate(_ value: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> [ChatTemplateValue] {
        switch value {
        case let .array(items): return items
        case let .object(object): return object.keys.map { .string($0) }
        case let .string(text): return text.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw .runtime(message: "'\(value.typeName)' object is not iterable", line: line)
        }
    }

    private func unpack(_ value: ChatTemplateValue, into targets: [String], line: Int) throws(ChatTemplateError) -> [(String, ChatTemplateValue)] {
        if targets.count == 1 { return [(targets[0], value)] }
        let items = try iterate(value, line: line)
        guard items.count == targets.count else {
            throw .runtime(message: "cannot unpack \(items.count) values into \(targets.count) names", line: line)
        }
        return Array(zip(targets, items))
    }

    /// `str(x)` within the output cap.
    func str(_ value: ChatTemplateValue) throws(ChatTemplateError) -> String {
        try value.pythonString(limit: limits.maxOutputBytes)
    }

    /// Lists are bounded like loops: a template cannot build more items than it may visit.
    private func checkCount(_ count: Int) throws(ChatTemplateError) {
        guard count <= limits.maxLoopIterations else {
            throw .limitExceeded("list of more than \(limits.maxLoopIterations) items")
        }
    }

    /// Refuses to wrap a value that is already nested near the JSON depth bound. Wrapping in a
    /// loop could otherwise nest a million levels, and comparing, printing or even releasing such
    /// a value recurses once per level. Inspected nodes count against a per-render budget, since
    /// shared storage lets a small value have exponentially many nodes.
    func checkNesting(_ value: ChatTemplateValue) throws(ChatTemplateError) -> ChatTemplateValue {
        func depth(_ value: ChatTemplateValue, _ level: Int) throws(ChatTemplateError) -> Int {
            inspectedNodes += 1
            guard inspectedNodes <= limits.maxInspectedNodes else {
                throw .limitExceeded("more than \(limits.maxInspectedNodes) value nodes inspected")
            }
            guard level < ChatTemplateValue.maxNestingDepth else { return level }
            var deepest = level
            switch value {
            case let .array(items):
                for item in items { deepest = max(deepest, try depth(item, level + 1)) }
            case let .object(object):
                for pair in object.pairs { deepest = max(deepest, try depth(pair.value, level + 1)) }
            default:
                break
            }
            return deepest
        }
        switch value {
        case .array, .object:
            guard try depth(value, 1) < ChatTemplateValue.maxNestingDepth else {
                throw .limitExceeded("values nested deeper than \(ChatTemplateValue.maxNestingDepth) levels")
            }
        default:
            break
        }
        return value
    }

    func lookup(_ name: String) -> ChatTemplateValue {
        for frame in frames.reversed() {
            if let value = frame[name] { return value }
        }
        return .undefined
    }

    // MARK: - Expressions

    func evaluate(_ expression: TemplateExpression) throws(ChatTemplateError) -> ChatTemplateValue {
        switch expression {
        case let .literal(value):
            return value
        case let .name(name, _):
            return lookup(name)
        case let .list(items):
            var values: [ChatTemplateValue] = []
            for item in items { values.append(try checkNesting(try evaluate(item))) }
            return .array(values)
        case let .dict(pairs):
            var object = ChatTemplateObject()
            for (keyExpression, valueExpression) in pairs {
                let key = try evaluate(keyExpression)
                guard case let .string(name) = key else {
                    throw .unsupported(what: "dict key of type '\(key.typeName)'", line: line(of: keyExpression))
                }
                object[name] = try checkNesting(try evaluate(valueExpression))
            }
            return .object(object)
        case let .attribute(base, name, line):
            return try attribute(name, of: try evaluate(base), line: line)
        case let .index(base, index, line):
            return try item(try evaluate(index), of: try evaluate(base), line: line)
        case let .slice(base, start, stop, step, line):
            return try slice(try evaluate(base), start: try start.map(evaluate), stop: try stop.map(evaluate),
                             step: try step.map(evaluate), line: line)
        case let .call(callee, arguments, line):
            return try call(callee, arguments, line: line)
        case let .filter(base, name, arguments, line):
            let value = try evaluate(base)
            let (positional, keyword) = try evaluateArguments(arguments)
            return try applyFilter(name, to: value, positional, keyword, line: line)
        case let .test(base, name, arguments, negated, line):
            // Functions are not values here, but templates probe them: `strftime_now is defined`.
            if case let .name(variable, _) = base, ["defined", "undefined", "callable"].contains(name),
               lookup(variable) == .undefined, isFunction(variable) {
                return .bool((name != "undefined") != negated)
            }
            let value = try evaluate(base)
            let (positional, _) = try evaluateArguments(arguments)
            return .bool(try applyTest(name, to: value, positional, line: line) != negated)
        case let .unary(op, operand, line):
            let value = try evaluate(operand)
            if op == "+", value.numericValue != nil { return value }
            switch value {
            case let .int(number) where number != Int.min: return .int(-number)
            case let .bool(flag): return .int(flag ? -1 : 0)
            case let .double(number): return .double(-number)
            default: throw .runtime(message: "bad operand type for unary \(op): '\(value.typeName)'", line: line)
            }
        case let .binary(op, left, right, line):
            return try binary(op, try evaluate(left), try evaluate(right), line: line)
        case let .and(left, right):
            let value = try evaluate(left)
            return value.isTruthy ? try evaluate(right) : value
        case let .or(left, right):
            let value = try evaluate(left)
            return value.isTruthy ? value : try evaluate(right)
        case let .not(operand):
            return .bool(!(try evaluate(operand).isTruthy))
        case let .conditional(condition, then, otherwise):
            if try evaluate(condition).isTruthy { return try evaluate(then) }
            return try otherwise.map(evaluate) ?? .undefined
        case let .concat(parts):
            var text = ""
            for part in parts {
                text += try str(try evaluate(part))
                try checkSize(text.utf8.count)
            }
            return .string(text)
        }
    }

    func evaluateArguments(_ arguments: TemplateArguments) throws(ChatTemplateError) -> ([ChatTemplateValue], ChatTemplateObject) {
        var positional: [ChatTemplateValue] = []
        for expression in arguments.positional { positional.append(try evaluate(expression)) }
        var keyword = ChatTemplateObject()
        for (name, expression) in arguments.keyword { keyword[name] = try evaluate(expression) }
        return (positional, keyword)
    }

    /// `a.b`: a dict's key, a namespace's attribute; undefined for anything missing. Undefined
    /// itself has no attributes (Jinja raises), which catches `message.contnet.strip()` typos.
    func attribute(_ name: String, of value: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        switch value {
        case let .object(object): return object[name] ?? .undefined
        case let .namespace(namespace): return namespaces[namespace.id][name] ?? .undefined
        case .undefined: throw .runtime(message: "undefined value has no attribute '\(name)'", line: line)
        default: return .undefined
        }
    }

    /// `a[i]`: list and string indexes (negative from the end), dict keys; undefined when missing.
    func item(_ index: ChatTemplateValue, of value: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        switch (value, index) {
        case let (.array(items), _):
            guard let position = index.integerValue else { return .undefined }
            let resolved = position < 0 ? position + items.count : position
            return items.indices.contains(resolved) ? items[resolved] : .undefined
        case let (.string(text), _):
            guard let position = index.integerValue else { return .undefined }
            let scalars = Array(text.unicodeScalars)
            let resolved = position < 0 ? position + scalars.count : position
            return scalars.indices.contains(resolved) ? .string(String(scalars[resolved])) : .undefined
        case let (.object, .string(key)), let (.namespace, .string(key)):
            return try attribute(key, of: value, line: line)
        case (.undefined, _):
            throw .runtime(message: "undefined value has no item of type '\(index.typeName)'", line: line)
        default:
            return .undefined
        }
    }

    private func slice(
        _ value: ChatTemplateValue, start: ChatTemplateValue?, stop: ChatTemplateValue?, step: ChatTemplateValue?, line: Int
    ) throws(ChatTemplateError) -> ChatTemplateValue {
        func bound(_ value: ChatTemplateValue?) throws(ChatTemplateError) -> Int? {
            guard let value, value != .none else { return nil }
            guard let number = value.integerValue else {
                throw .runtime(message: "slice indices must be integers or None", line: line)
            }
            return number
        }
        let step = try bound(step) ?? 1
        guard step != 0 else { throw .runtime(message: "slice step cannot be zero", line: line) }
        let start = try bound(start)
        let stop = try bound(stop)
        func indices(count: Int) -> [Int] {
            var result: [Int] = []
            if step > 0 {
                var from = start ?? 0
                var to = stop ?? count
                if from < 0 { from = max(0, from + count) } else { from = min(from, count) }
                if to < 0 { to = max(0, to + count) } else { to = min(to, count) }
                var index = from
                while index < to {
                    result.append(index)
                    index += step
                }
            } else {
                var from = start ?? count - 1
                var to = stop ?? -1
                if start != nil { from = from < 0 ? max(-1, from + count) : min(from, count - 1) }
                if stop != nil { to = to < 0 ? max(-1, to + count) : min(to, count - 1) }
                var index = from
                while index > to {
                    result.append(index)
                    index += step
                }
            }
            return result
        }
        switch value {
        case let .array(items):
            return .array(indices(count: items.count).map { items[$0] })
        case let .string(text):
            let scalars = Array(text.unicodeScalars)
            var view = String.UnicodeScalarView()
            for index in indices(count: scalars.count) { view.append(scalars[index]) }
            return .string(String(view))
        default:
            throw .runtime(message: "'\(value.typeName)' object is not subscriptable", line: line)
        }
    }

    // MARK: - Operators

    private func binary(_ op: String, _ left: ChatTemplateValue, _ right: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        switch op {
        case "==": return .bool(left.pythonEquals(right))
        case "!=": return .bool(!left.pythonEquals(right))
        case "<", ">", "<=", ">=":
            let (a, b) = op == "<" || op == "<=" ? (left, right) : (right, left)
            guard let less = a.pythonLess(b) else {
                throw .runtime(message: "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'", line: line)
            }
            return .bool(op.count == 2 ? less || a.pythonEquals(b) : less)
        case "in": return .bool(try contains(right, left, line: line))
        case "not in": return .bool(!(try contains(right, left, line: line)))
        default: return try arithmetic(op, left, right, line: line)
        }
    }

    func contains(_ container: ChatTemplateValue, _ element: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> Bool {
        switch container {
        case let .string(text):
            guard case let .string(needle) = element else {
                throw .runtime(message: "'in <string>' requires string as left operand, not \(element.typeName)", line: line)
            }
            return needle.isEmpty || text.unicodeScalars.firstRange(of: needle.unicodeScalars) != nil
        case let .array(items): return items.contains { $0.pythonEquals(element) }
        case let .object(object):
            guard case let .string(key) = element else { return false }
            return object[key] != nil
        case .undefined: return false
        default:
            throw .runtime(message: "argument of type '\(container.typeName)' is not iterable", line: line)
        }
    }

    private func arithmetic(_ op: String, _ left: ChatTemplateValue, _ right: ChatTemplateValue, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        if op == "%", case .string = left {
            throw .unsupported(what: "string % formatting", line: line)
        }
        let failure = ChatTemplateError.runtime(
            message: "unsupported operand type(s) for \(op): '\(left.typeName)' and '\(right.typeName)'", line: line)
        switch (op, left, right) {
        case let ("+", .string(a), .string(b)):
            try checkSize(a.utf8.count + b.utf8.count)
            return .string(a + b)
        case let ("+", .array(a), .array(b)):
            try checkCount(a.count + b.count)
            return .array(a + b)
        case let ("*", .string(text), count), let ("*", count, .string(text)):
            guard let times = count.integerValue else { throw failure }
            let (size, overflow) = text.utf8.count.multipliedReportingOverflow(by: max(0, times))
            try checkSize(overflow ? Int.max : size)
            // An empty text repeated 10**18 times is empty, but String(repeating:count:) would loop that often.
            return .string(text.isEmpty ? "" : String(repeating: text, count: max(0, times)))
        case let ("*", .array(items), count), let ("*", count, .array(items)):
            guard let times = count.integerValue else { throw failure }
            let (size, overflow) = items.count.multipliedReportingOverflow(by: max(0, times))
            try checkCount(overflow ? Int.max : size)
            // Likewise: an empty list times 10**18 must not allocate 10**18 empty copies first.
            return .array(items.isEmpty ? [] : Array([[ChatTemplateValue]](repeating: items, count: max(0, times)).joined()))
        default: break
        }
        if let a = left.integerValue, let b = right.integerValue {
            let result: (Int, Bool)
            switch op {
            case "+": result = a.addingReportingOverflow(b)
            case "-": result = a.subtractingReportingOverflow(b)
            case "*": result = a.multipliedReportingOverflow(by: b)
            case "/":
                guard b != 0 else { throw .runtime(message: "division by zero", line: line) }
                return .double(Double(a) / Double(b))
            case "//", "%":
                guard b != 0 else { throw .runtime(message: "integer division or modulo by zero", line: line) }
                var quotient = a / b
                if (a % b != 0) && ((a < 0) != (b < 0)) { quotient -= 1 }
                return .int(op == "//" ? quotient : a - quotient * b)
            case "**":
                guard b >= 0 else { return .double(pow(Double(a), Double(b))) }
                var value = 1
                for _ in 0..<min(b, 64) {
                    let (next, overflow) = value.multipliedReportingOverflow(by: a)
                    if overflow { throw .runtime(message: "integer too large", line: line) }
                    value = next
                }
                return .int(value)
            default: throw failure
            }
            if result.1 { throw .runtime(message: "integer overflow in \(op)", line: line) }
            return .int(result.0)
        }
        guard let a = left.numericValue, let b = right.numericValue else { throw failure }
        switch op {
        case "+": return .double(a + b)
        case "-": return .double(a - b)
        case "*": return .double(a * b)
        case "/", "//", "%":
            guard b != 0 else { throw .runtime(message: "float division by zero", line: line) }
            if op == "/" { return .double(a / b) }
            let quotient = (a / b).rounded(.down)
            return .double(op == "//" ? quotient : a - quotient * b)
        case "**": return .double(pow(a, b))
        default: throw failure
        }
    }

    // MARK: - Calls

    private func call(_ callee: TemplateExpression, _ arguments: TemplateArguments, line: Int) throws(ChatTemplateError) -> ChatTemplateValue {
        if case let .attribute(base, method, attributeLine) = callee {
            let receiver = try evaluate(base)
            let (positional, keyword) = try evaluateArguments(arguments)
            return try callMethod(method, on: receiver, positional, keyword, line: attributeLine)
        }
        guard case let .name(name, _) = callee else {
            throw .runtime(message: "'\(try evaluate(callee).typeName)' object is not callable", line: line)
        }
        let (positional, keyword) = try evaluateArguments(arguments)
        if let macro = macros[name] {
            return try callMacro(macro, positional, keyword, line: line)
        }
        return try callGlobal(name, positional, keyword, line: line)
    }

    private func callMacro(
        _ macro: TemplateMacro, _ positional: [ChatTemplateValue], _ keyword: ChatTemplateObject, line: Int
    ) throws(ChatTemplateError) -> ChatTemplateValue {
        guard positional.count <= macro.parameters.count else {
            throw .runtime(message: "macro '\(macro.name)' takes \(macro.parameters.count) arguments, got \(positional.count)", line: line)
        }
        callDepth += 1
        defer { callDepth -= 1 }
        guard callDepth <= limits.maxCallDepth else {
            throw .limitExceeded("macro calls nested deeper than \(limits.maxCallDepth) at line \(line)")
        }
        let saved = frames
        frames = Array(frames.prefix(2)) + [[:]]
        defer { frames = saved }
        for (index, parameter) in macro.parameters.enumerated() {
            var value = index < positional.count ? positional[index] : keyword[parameter.name]
            if value == nil, let defaultValue = parameter.defaultValue { value = try evaluate(defaultValue) }
            frames[frames.count - 1][parameter.name] = value ?? .undefined
        }
        var out = ""
        _ = try execute(macro.body, into: &out)
        return .string(out)
    }

    private func isFunction(_ name: String) -> Bool {
        macros[name] != nil || Self.globalFunctions.contains(name)
    }

    private func line(of expression: TemplateExpression) -> Int {
        switch expression {
        case let .name(_, line), let .attribute(_, _, line), let .index(_, _, line), let .call(_, _, line),
             let .filter(_, _, _, line), let .test(_, _, _, _, line), let .unary(_, _, line), let .binary(_, _, _, line),
             let .slice(_, _, _, _, line):
            return line
        default:
            return 0
        }
    }
}
