/// A string-keyed mapping that remembers insertion order, like a Python dict.
public struct ChatTemplateObject: Sendable, Equatable {
    /// The keys in insertion order.
    public private(set) var keys: [String] = []
    private var storage: [String: ChatTemplateValue] = [:]

    /// An empty mapping.
    public init() {}

    /// A mapping of `pairs` in order; a repeated key keeps its first position and last value.
    public init(_ pairs: [(String, ChatTemplateValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    /// Number of keys.
    public var count: Int { keys.count }
    /// True when there are no keys.
    public var isEmpty: Bool { keys.isEmpty }

    /// Setting `nil` removes the key; setting an existing key keeps its position.
    public subscript(key: String) -> ChatTemplateValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Key-value pairs in insertion order.
    public var pairs: [(key: String, value: ChatTemplateValue)] {
        keys.map { ($0, storage[$0]!) }
    }

    /// Python dict equality: same keys with equal values, order ignored.
    public static func == (lhs: ChatTemplateObject, rhs: ChatTemplateObject) -> Bool {
        lhs.storage == rhs.storage
    }
}
