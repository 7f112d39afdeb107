/// One lexical unit of a template, with where it starts (1-based line and column).
struct TemplateToken: Equatable {
    enum Kind: Equatable {
        /// Literal template text, whitespace control already applied.
        case text(String)
        case variableBegin, variableEnd, blockBegin, blockEnd
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case op(String)
        case end
    }

    var kind: Kind
    var line: Int
    var column: Int
}
