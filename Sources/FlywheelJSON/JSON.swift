/// A JSON value. Objects keep their keys in document order, so a logged request reads as the client sent it.
public enum JSON: Sendable, Equatable {
    case null
    case bool(Bool)
    /// An integer literal that fits in 64 bits (no fraction, no exponent).
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object(JSONObject)
}

/// An ordered JSON object. Small objects are searched linearly; from `indexThreshold` keys on, a hash
/// index from key to position keeps lookups and parsing linear however many keys a client sends.
public struct JSONObject: Sendable, Equatable, Sequence {
    public private(set) var entries: [(key: String, value: JSON)]
    /// Position of each key's first entry; nil while the object is small.
    private var index: [String: Int]?

    /// Objects with more keys than this get a hash index; below it a linear scan is faster.
    static let indexThreshold = 16

    public init() { entries = [] }
    /// An object of `entries` in order, kept as given (a repeated key is looked up at its first entry).
    public init(_ entries: [(String, JSON)]) {
        self.entries = entries.map { (key: $0.0, value: $0.1) }
        rebuildIndex()
    }

    /// An object of `pairs` with duplicate keys merged: a repeated key keeps its first position and
    /// takes its last value (the parser's policy, as in most parsers). Linear in the number of pairs.
    init(mergingDuplicates pairs: [(key: String, value: JSON)]) {
        if pairs.count <= Self.indexThreshold {
            entries = []
            entries.reserveCapacity(pairs.count)
            for pair in pairs {
                if let i = entries.firstIndex(where: { $0.key == pair.key }) {
                    entries[i].value = pair.value
                } else {
                    entries.append(pair)
                }
            }
            return
        }
        var positions = [String: Int](minimumCapacity: pairs.count)
        var merged: [(key: String, value: JSON)] = []
        merged.reserveCapacity(pairs.count)
        for pair in pairs {
            if let i = positions[pair.key] {
                merged[i].value = pair.value
            } else {
                positions[pair.key] = merged.count
                merged.append(pair)
            }
        }
        entries = merged
        index = positions
    }

    public var count: Int { entries.count }
    public var keys: [String] { entries.map(\.key) }

    /// Whether lookups go through the hash index (for tests).
    var isIndexed: Bool { index != nil }

    /// The value for `key`; setting `nil` removes it, setting a value replaces it in place or appends it.
    public subscript(key: String) -> JSON? {
        get { position(of: key).map { entries[$0].value } }
        set {
            switch (position(of: key), newValue) {
            case let (i?, v?):
                entries[i].value = v
            case let (i?, nil):
                entries.remove(at: i)
                // Positions after `i` shift down; removal is linear anyway.
                if index != nil { rebuildIndex() }
            case let (nil, v?):
                entries.append((key: key, value: v))
                if index != nil {
                    index?[key] = entries.count - 1
                } else if entries.count > Self.indexThreshold {
                    rebuildIndex()
                }
            case (nil, nil):
                break
            }
        }
    }

    private func position(of key: String) -> Int? {
        if let index { return index[key] }
        return entries.firstIndex(where: { $0.key == key })
    }

    private mutating func rebuildIndex() {
        guard entries.count > Self.indexThreshold else {
            index = nil
            return
        }
        var positions = [String: Int](minimumCapacity: entries.count)
        for (i, entry) in entries.enumerated() where positions[entry.key] == nil { positions[entry.key] = i }
        index = positions
    }

    public func makeIterator() -> IndexingIterator<[(key: String, value: JSON)]> { entries.makeIterator() }

    /// Same keys and values in the same order (the index is a cache and not compared).
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        lhs.entries.count == rhs.entries.count
            && zip(lhs.entries, rhs.entries).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

extension JSON {
    public subscript(key: String) -> JSON? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public subscript(index: Int) -> JSON? {
        if case .array(let a) = self, a.indices.contains(index) { return a[index] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var objectValue: JSONObject? { if case .object(let o) = self { return o }; return nil }
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
    public var isNull: Bool { self == .null }

    /// The value as a number, whichever literal form it had.
    public var doubleValue: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// The value as an integer, when it is integral.
    public var intValue: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .double(let d): return d.rounded() == d ? Int(exactly: d) : nil
        default: return nil
        }
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByFloatLiteral, ExpressibleByNilLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(nilLiteral: ()) { self = .null }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) { self = .object(JSONObject(elements)) }
}

extension JSON {
    /// `.string(s)` or `.null` for nil.
    public static func optional(_ s: String?) -> JSON { s.map(JSON.string) ?? .null }
    /// `.int(n)` or `.null` for nil.
    public static func optional(_ n: Int?) -> JSON { n.map { .int(Int64($0)) } ?? .null }
    /// `.double(d)` or `.null` for nil.
    public static func optional(_ d: Double?) -> JSON { d.map(JSON.double) ?? .null }
}
