/// `{% for targets in iterable if condition %}body{% else %}otherwise{% endfor %}`.
struct TemplateForLoop: Sendable {
    var targets: [String]
    var iterable: TemplateExpression
    var condition: TemplateExpression?
    var body: [TemplateStatement]
    var otherwise: [TemplateStatement]
    var line: Int
}
