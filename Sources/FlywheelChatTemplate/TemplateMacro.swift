/// `{% macro name(a, b=default) %}body{% endmacro %}`.
struct TemplateMacro: Sendable {
    var name: String
    var parameters: [(name: String, defaultValue: TemplateExpression?)]
    var body: [TemplateStatement]
}
