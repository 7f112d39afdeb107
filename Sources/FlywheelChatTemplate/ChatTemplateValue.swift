/// A value as chat templates see it: the JSON-like data a template is rendered with, plus Jinja's
/// `undefined` (a missing variable or key) and namespaces created by `namespace(...)`.
///
/// Build one from Swift literals (`["role": "user", "content": "Hi"]`), or from JSON text with
/// `init(json:)`; object keys keep their order, as Python dicts do, so `tojson` output matches.
public enum ChatTemplateValue: Sendable, Equatable {
    /// Python's `None`, JSON `null`.
    case none
    /// A name or key that does not exist. Falsy, renders as "", iterates as empty.
    case undefined
    /// Python `True`/`False`.
    case bool(Bool)
    /// A Python int (bounded to 64 bits here; overflow is an error).
    case int(Int)
    /// A Python float.
    case double(Double)
    /// A Python str; lengths and indexes count Unicode code points, as Python does.
    case string(String)
    /// A Python list (tuples are lists here too).
    case array([ChatTemplateValue])
    /// A mapping with string keys in insertion order.
    case object(ChatTemplateObject)
    /// A mutable attribute bag made by `namespace(...)` while rendering.
    case namespace(ChatTemplateNamespace)
}

extension ChatTemplateValue: ExpressibleByNilLiteral {
    public init(nilLiteral: ()) { self = .none }
}

extension ChatTemplateValue: ExpressibleByBooleanLiteral {
    public init(booleanLiteral value: Bool) { self = .bool(value) }
}

extension ChatTemplateValue: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int) { self = .int(value) }
}

extension ChatTemplateValue: ExpressibleByFloatLiteral {
    public init(floatLiteral value: Double) { self = .double(value) }
}

extension ChatTemplateValue: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension ChatTemplateValue: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: ChatTemplateValue...) { self = .array(elements) }
}

extension ChatTemplateValue: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (String, ChatTemplateValue)...) {
        var object = ChatTemplateObject()
        for (key, value) in elements { object[key] = value }
        self = .object(object)
    }
}
