/// Why a chat template could not be parsed or rendered.
public enum ChatTemplateError: Error, CustomStringConvertible, Equatable {
    /// The template text is not valid Jinja (as far as this renderer knows it).
    case syntax(message: String, line: Int, column: Int)
    /// The template called `raise_exception(message)`; models use it to reject a conversation.
    case templateRaised(String)
    /// A construct this renderer does not implement (a filter, test, tag, method or function).
    case unsupported(what: String, line: Int)
    /// An operation on values of the wrong kind, an undefined value used where one is needed, etc.
    case runtime(message: String, line: Int)
    /// The template exceeded a resource limit (output size, loop iterations, recursion depth).
    case limitExceeded(String)

    /// A one-line message naming what went wrong and where.
    public var description: String {
        switch self {
        case let .syntax(message, line, column):
            return "chat template syntax error at line \(line), column \(column): \(message)"
        case let .templateRaised(message):
            return "chat template raised: \(message)"
        case let .unsupported(what, line):
            return "unsupported \(what) at line \(line)"
        case let .runtime(message, line):
            return "chat template error at line \(line): \(message)"
        case let .limitExceeded(what):
            return "chat template limit exceeded: \(what)"
        }
    }
}
