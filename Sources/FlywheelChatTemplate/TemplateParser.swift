/// Builds the statement tree from tokens, following Jinja's grammar and operator precedence
/// (`or` < `and` < `not` < comparisons < `+ -` < `~` < `* / // %` < `**` < unary < filters, tests
/// and postfix access).
struct TemplateParser {
    /// Nesting deeper than this (blocks or expressions) is refused rather than risking the stack.
    static let maxNesting = 64

    private let tokens: [TemplateToken]
    private var pos = 0
    private var nesting = 0

    init(tokens: [TemplateToken]) {
        self.tokens = tokens
    }

    mutating func parseTemplate() throws(ChatTemplateError) -> [TemplateStatement] {
        try parseBody(until: []).body
    }

    // MARK: - Statements

    /// Parses statements until a block tag named in `ends`; returns the body and that tag's name,
    /// positioned after the name (the caller reads the rest of that tag).
    private mutating func parseBody(until ends: Set<String>) throws(ChatTemplateError) -> (body: [TemplateStatement], end: String) {
        try enter()
        defer { nesting -= 1 }
        var body: [TemplateStatement] = []
        while true {
            let token = current
            switch token.kind {
            case .end:
                if ends.isEmpty { return (body, "") }
                let expected = ends.sorted().map { "'\($0)'" }.joined(separator: " or ")
                throw syntax("unexpected end of template, expected \(expected)", token)
            case let .text(text):
                body.append(.text(text))
                advance()
            case .variableBegin:
                advance()
                let expression = try parseExpression()
                try expect(.variableEnd, "'}}'")
                body.append(.output(expression))
            case .blockBegin:
                advance()
                guard case let .name(tag) = current.kind else { throw syntax("expected a tag name", current) }
                if ends.contains(tag) {
                    advance()
                    return (body, tag)
                }
                body.append(try parseTag(tag, token: current))
            default:
                throw syntax("unexpected token", token)
            }
        }
    }

    private mutating func parseTag(_ tag: String, token: TemplateToken) throws(ChatTemplateError) -> TemplateStatement {
        advance()
        switch tag {
        case "if":
            return try parseIf()
        case "for":
            return try parseFor(line: token.line)
        case "set":
            return try parseSet(line: token.line)
        case "macro":
            return try parseMacro()
        case "break", "continue":
            try expect(.blockEnd, "'%}'")
            return tag == "break" ? .breakLoop(line: token.line) : .continueLoop(line: token.line)
        case "generation":
            try expect(.blockEnd, "'%}'")
            let body = try parseBody(until: ["endgeneration"]).body
            try expect(.blockEnd, "'%}'")
            return .generation(body)
        case "elif", "else", "endif", "endfor", "endset", "endmacro", "endgeneration", "endraw":
            throw syntax("unexpected '\(tag)'", token)
        default:
            throw .unsupported(what: "tag '\(tag)'", line: token.line)
        }
    }

    private mutating func parseIf() throws(ChatTemplateError) -> TemplateStatement {
        var branches: [(condition: TemplateExpression, body: [TemplateStatement])] = []
        var condition = try parseExpression()
        while true {
            try expect(.blockEnd, "'%}'")
            let (body, end) = try parseBody(until: ["elif", "else", "endif"])
            branches.append((condition, body))
            switch end {
            case "elif":
                condition = try parseExpression()
            case "else":
                try expect(.blockEnd, "'%}'")
                let otherwise = try parseBody(until: ["endif"]).body
                try expect(.blockEnd, "'%}'")
                return .ifChain(branches: branches, otherwise: otherwise)
            default:
                try expect(.blockEnd, "'%}'")
                return .ifChain(branches: branches, otherwise: [])
            }
        }
    }

    private mutating func parseFor(line: Int) throws(ChatTemplateError) -> TemplateStatement {
        let targets = try parseTargets()
        guard isName("in") else { throw syntax("expected 'in'", current) }
        advance()
        // Jinja parses the iterable without conditional expressions so that `if` filters items.
        let iterable = try parseOr()
        var condition: TemplateExpression?
        if isName("if") {
            advance()
            condition = try parseExpression()
        }
        if isName("recursive") { throw .unsupported(what: "recursive for loop", line: line) }
        try expect(.blockEnd, "'%}'")
        let (body, end) = try parseBody(until: ["else", "endfor"])
        var otherwise: [TemplateStatement] = []
        if end == "else" {
            try expect(.blockEnd, "'%}'")
            otherwise = try parseBody(until: ["endfor"]).body
        }
        try expect(.blockEnd, "'%}'")
        return .forLoop(TemplateForLoop(
            targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise, line: line))
    }

    private mutating func parseTargets() throws(ChatTemplateError) -> [String] {
        var parenthesized = false
        if isOp("(") {
            parenthesized = true
            advance()
        }
        var targets = [try expectName()]
        while isOp(",") {
            advance()
            targets.append(try expectName())
        }
        if parenthesized { try expectOp(")") }
        return targets
    }

    private mutating func parseSet(line: Int) throws(ChatTemplateError) -> TemplateStatement {
        let first = try expectName()
        if isOp(".") {
            advance()
            let attribute = try expectName()
            try expectOp("=")
            let value = try parseExpression()
            try expect(.blockEnd, "'%}'")
            return .setAttribute(object: first, attribute: attribute, value: value, line: line)
        }
        var targets = [first]
        while isOp(",") {
            advance()
            targets.append(try expectName())
        }
        if targets.count == 1, current.kind == .blockEnd {
            advance()
            let body = try parseBody(until: ["endset"]).body
            try expect(.blockEnd, "'%}'")
            return .setBlock(target: first, body: body)
        }
        try expectOp("=")
        var value = try parseExpression()
        if isOp(",") {
            var items = [value]
            while isOp(",") {
                advance()
                items.append(try parseExpression())
            }
            value = .list(items)
        }
        try expect(.blockEnd, "'%}'")
        return .set(targets: targets, value: value, line: line)
    }

    private mutating func parseMacro() throws(ChatTemplateError) -> TemplateStatement {
        let name = try expectName()
        try expectOp("(")
        var parameters: [(name: String, defaultValue: TemplateExpression?)] = []
        while !isOp(")") {
            let parameter = try expectName()
            var defaultValue: TemplateExpression?
            if isOp("=") {
                advance()
                defaultValue = try parseExpression()
            }
            parameters.append((parameter, defaultValue))
            if isOp(",") { advance() } else { break }
        }
        try expectOp(")")
        try expect(.blockEnd, "'%}'")
        let body = try parseBody(until: ["endmacro"]).body
        if case .name = current.kind { advance() }
        try expect(.blockEnd, "'%}'")
        return .macro(TemplateMacro(name: name, parameters: parameters, body: body))
    }

    // MARK: - Expressions

    mutating func parseExpression() throws(ChatTemplateError) -> TemplateExpression {
        var expression = try parseOr()
        while isName("if") {
            advance()
            let condition = try parseOr()
            var otherwise: TemplateExpression?
            if isName("else") {
                advance()
                otherwise = try parseExpression()
            }
            expression = .conditional(condition: condition, then: expression, otherwise: otherwise)
        }
        return expression
    }

    private mutating func parseOr() throws(ChatTemplateError) -> TemplateExpression {
        var left = try parseAnd()
        while isName("or") {
            advance()
            left = .or(left, try parseAnd())
        }
        return left
    }

    private mutating func parseAnd() throws(ChatTemplateError) -> TemplateExpression {
        var left = try parseNot()
        while isName("and") {
            advance()
            left = .and(left, try parseNot())
        }
        return left
    }

    private mutating func parseNot() throws(ChatTemplateError) -> TemplateExpression {
        if isName("not") {
            advance()
            try enter()
            defer { nesting -= 1 }
            return .not(try parseNot())
        }
        return try parseCompare()
    }

    private mutating func parseCompare() throws(ChatTemplateError) -> TemplateExpression {
        let first = try parseMath1()
        var comparisons: [TemplateExpression] = []
        var left = first
        while true {
            let line = current.line
            var op: String
            if case let .op(symbol) = current.kind, ["==", "!=", "<", ">", "<=", ">="].contains(symbol) {
                op = symbol
                advance()
            } else if isName("in") {
                op = "in"
                advance()
            } else if isName("not"), case .name("in") = peek.kind {
                op = "not in"
                advance()
                advance()
            } else {
                break
            }
            let right = try parseMath1()
            comparisons.append(.binary(op, left, right, line: line))
            left = right
        }
        guard var result = comparisons.first else { return first }
        for comparison in comparisons.dropFirst() { result = .and(result, comparison) }
        return result
    }

    private mutating func parseMath1() throws(ChatTemplateError) -> TemplateExpression {
        var left = try parseConcat()
        while case let .op(symbol) = current.kind, symbol == "+" || symbol == "-" {
            let line = current.line
            advance()
            left = .binary(symbol, left, try parseConcat(), line: line)
        }
        return left
    }

    private mutating func parseConcat() throws(ChatTemplateError) -> TemplateExpression {
        var parts = [try parseMath2()]
        while isOp("~") {
            advance()
            parts.append(try parseMath2())
        }
        return parts.count == 1 ? parts[0] : .concat(parts)
    }

    private mutating func parseMath2() throws(ChatTemplateError) -> TemplateExpression {
        var left = try parsePow()
        while case let .op(symbol) = current.kind, ["*", "/", "//", "%"].contains(symbol) {
            let line = current.line
            advance()
            left = .binary(symbol, left, try parsePow(), line: line)
        }
        return left
    }

    private mutating func parsePow() throws(ChatTemplateError) -> TemplateExpression {
        var left = try parseUnary()
        while isOp("**") {
            let line = current.line
            advance()
            left = .binary("**", left, try parseUnary(), line: line)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool = true) throws(ChatTemplateError) -> TemplateExpression {
        try enter()
        defer { nesting -= 1 }
        var node: TemplateExpression
        if case let .op(symbol) = current.kind, symbol == "-" || symbol == "+" {
            let line = current.line
            advance()
            node = .unary(symbol, try parseUnary(withFilter: false), line: line)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpression(node) }
        return node
    }

    private mutating func parsePrimary() throws(ChatTemplateError) -> TemplateExpression {
        let token = current
        switch token.kind {
        case let .name(name):
            advance()
            switch name {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(name, line: token.line)
            }
        case var .string(text):
            advance()
            while case let .string(more) = current.kind {
                text += more
                advance()
            }
            return .literal(.string(text))
        case let .integer(value):
            advance()
            return .literal(.int(value))
        case let .float(value):
            advance()
            return .literal(.double(value))
        case .op("("):
            advance()
            if isOp(")") {
                advance()
                return .list([])
            }
            let first = try parseExpression()
            guard isOp(",") else {
                try expectOp(")")
                return first
            }
            var items = [first]
            while isOp(",") {
                advance()
                if isOp(")") { break }
                items.append(try parseExpression())
            }
            try expectOp(")")
            return .list(items)
        case .op("["):
            advance()
            var items: [TemplateExpression] = []
            while !isOp("]") {
                items.append(try parseExpression())
                if isOp(",") { advance() } else { break }
            }
            try expectOp("]")
            return .list(items)
        case .op("{"):
            advance()
            var pairs: [(TemplateExpression, TemplateExpression)] = []
            while !isOp("}") {
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
                if isOp(",") { advance() } else { break }
            }
            try expectOp("}")
            return .dict(pairs)
        default:
            throw syntax("unexpected \(describe(token))", token)
        }
    }

    private mutating func parsePostfix(_ start: TemplateExpression) throws(ChatTemplateError) -> TemplateExpression {
        var node = start
        while true {
            if isOp(".") || isOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    private mutating func parseFilterExpression(_ start: TemplateExpression) throws(ChatTemplateError) -> TemplateExpression {
        var node = start
        while true {
            if isOp("|") {
                let line = current.line
                advance()
                let name = try expectName()
                var arguments = TemplateArguments()
                if isOp("(") { arguments = try parseArguments() }
                node = .filter(node, name: name, arguments, line: line)
            } else if isName("is") {
                let line = current.line
                advance()
                var negated = false
                if isName("not") {
                    negated = true
                    advance()
                }
                let name = try expectName()
                var arguments = TemplateArguments()
                if isOp("(") {
                    arguments = try parseArguments()
                } else if startsTestArgument() {
                    let argument = try parsePostfix(try parsePrimary())
                    arguments.positional = [argument]
                }
                node = .test(node, name: name, arguments, negated: negated, line: line)
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    /// Jinja lets a test take one argument without parentheses: `x is divisibleby 3`.
    private func startsTestArgument() -> Bool {
        switch current.kind {
        case let .name(name): return !["else", "or", "and", "if", "in", "not"].contains(name)
        case .string, .integer, .float, .op("["), .op("{"): return true
        default: return false
        }
    }

    private mutating func parseSubscript(_ node: TemplateExpression) throws(ChatTemplateError) -> TemplateExpression {
        let line = current.line
        if isOp(".") {
            advance()
            switch current.kind {
            case let .name(name):
                advance()
                return .attribute(node, name, line: line)
            case let .integer(index):
                advance()
                return .index(node, .literal(.int(index)), line: line)
            default:
                throw syntax("expected an attribute name", current)
            }
        }
        advance()
        var start: TemplateExpression?
        if !isOp(":") { start = try parseExpression() }
        if isOp(":") {
            advance()
            var stop: TemplateExpression?
            var step: TemplateExpression?
            if !isOp("]") && !isOp(":") { stop = try parseExpression() }
            if isOp(":") {
                advance()
                if !isOp("]") { step = try parseExpression() }
            }
            try expectOp("]")
            return .slice(node, start: start, stop: stop, step: step, line: line)
        }
        try expectOp("]")
        guard let start else { throw syntax("expected an index", current) }
        return .index(node, start, line: line)
    }

    private mutating func parseCall(_ node: TemplateExpression) throws(ChatTemplateError) -> TemplateExpression {
        let line = current.line
        return .call(node, try parseArguments(), line: line)
    }

    private mutating func parseArguments() throws(ChatTemplateError) -> TemplateArguments {
        try expectOp("(")
        var arguments = TemplateArguments()
        while !isOp(")") {
            if case let .name(name) = current.kind, case .op("=") = peek.kind {
                advance()
                advance()
                arguments.keyword.append((name, try parseExpression()))
            } else {
                if !arguments.keyword.isEmpty { throw syntax("positional argument after keyword argument", current) }
                arguments.positional.append(try parseExpression())
            }
            if isOp(",") { advance() } else { break }
        }
        try expectOp(")")
        return arguments
    }

    // MARK: - Token helpers

    private var current: TemplateToken { tokens[pos] }
    private var peek: TemplateToken { tokens[min(pos + 1, tokens.count - 1)] }

    private mutating func advance() {
        if pos < tokens.count - 1 { pos += 1 }
    }

    private mutating func enter() throws(ChatTemplateError) {
        nesting += 1
        if nesting > Self.maxNesting {
            throw .limitExceeded("template nesting deeper than \(Self.maxNesting) at line \(current.line)")
        }
    }

    private func isName(_ name: String) -> Bool { current.kind == .name(name) }
    private func isOp(_ symbol: String) -> Bool { current.kind == .op(symbol) }

    private mutating func expect(_ kind: TemplateToken.Kind, _ what: String) throws(ChatTemplateError) {
        guard current.kind == kind else { throw syntax("expected \(what), found \(describe(current))", current) }
        advance()
    }

    private mutating func expectOp(_ symbol: String) throws(ChatTemplateError) {
        try expect(.op(symbol), "'\(symbol)'")
    }

    private mutating func expectName() throws(ChatTemplateError) -> String {
        guard case let .name(name) = current.kind else { throw syntax("expected a name, found \(describe(current))", current) }
        advance()
        return name
    }

    private func describe(_ token: TemplateToken) -> String {
        switch token.kind {
        case .text: return "text"
        case .variableBegin: return "'{{'"
        case .variableEnd: return "'}}'"
        case .blockBegin: return "'{%'"
        case .blockEnd: return "'%}'"
        case let .name(name): return "'\(name)'"
        case .string: return "string"
        case let .integer(value): return "'\(value)'"
        case let .float(value): return "'\(value)'"
        case let .op(symbol): return "'\(symbol)'"
        case .end: return "end of template"
        }
    }

    private func syntax(_ message: String, _ token: TemplateToken) -> ChatTemplateError {
        .syntax(message: message, line: token.line, column: token.column)
    }
}
