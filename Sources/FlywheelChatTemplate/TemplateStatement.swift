/// A node of a parsed template body.
indirect enum TemplateStatement: Sendable {
    case text(String)
    case output(TemplateExpression)
    case ifChain(branches: [(condition: TemplateExpression, body: [TemplateStatement])], otherwise: [TemplateStatement])
    case forLoop(TemplateForLoop)
    /// `{% set a = x %}` or `{% set a, b = x %}`.
    case set(targets: [String], value: TemplateExpression, line: Int)
    /// `{% set ns.attr = x %}`.
    case setAttribute(object: String, attribute: String, value: TemplateExpression, line: Int)
    /// `{% set a %}...{% endset %}`.
    case setBlock(target: String, body: [TemplateStatement])
    case macro(TemplateMacro)
    case breakLoop(line: Int)
    case continueLoop(line: Int)
    /// Hugging Face's `{% generation %}` marker: renders its body unchanged.
    case generation([TemplateStatement])
}
