/// An expression inside `{{ }}` or a tag; `line` on each node is where it starts, for errors.
indirect enum TemplateExpression: Sendable {
    case literal(ChatTemplateValue)
    case name(String, line: Int)
    case list([TemplateExpression])
    case dict([(TemplateExpression, TemplateExpression)])
    case attribute(TemplateExpression, String, line: Int)
    case index(TemplateExpression, TemplateExpression, line: Int)
    case slice(TemplateExpression, start: TemplateExpression?, stop: TemplateExpression?, step: TemplateExpression?, line: Int)
    case call(TemplateExpression, TemplateArguments, line: Int)
    case filter(TemplateExpression, name: String, TemplateArguments, line: Int)
    case test(TemplateExpression, name: String, TemplateArguments, negated: Bool, line: Int)
    case unary(String, TemplateExpression, line: Int)
    case binary(String, TemplateExpression, TemplateExpression, line: Int)
    case and(TemplateExpression, TemplateExpression)
    case or(TemplateExpression, TemplateExpression)
    case not(TemplateExpression)
    /// `a if condition else b`; without `else`, `b` is undefined.
    case conditional(condition: TemplateExpression, then: TemplateExpression, otherwise: TemplateExpression?)
    /// `~`: string concatenation of any values.
    case concat([TemplateExpression])
}
