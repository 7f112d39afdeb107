extension String {
    /// Case-insensitive ASCII prefix test on bytes, without allocating (header names and media types are ASCII).
    /// On `String` rather than `StringProtocol` so it compiles to a byte loop, with no generic metadata lookup.
    func hasPrefixIgnoringASCIICase(_ prefix: StaticString) -> Bool {
        var mine = self
        return mine.withUTF8 { text in
            prefix.withUTF8Buffer { p in
                guard text.count >= p.count else { return false }
                for i in 0..<p.count where Self.lower(text[i]) != Self.lower(p[i]) { return false }
                return true
            }
        }
    }

    /// Case-insensitive ASCII equality without allocating.
    func equalsIgnoringASCIICase(_ other: StaticString) -> Bool {
        utf8.count == other.utf8CodeUnitCount && hasPrefixIgnoringASCIICase(other)
    }

    /// Whether `needle` (lowercase ASCII) occurs anywhere, ignoring ASCII case: a byte loop, where
    /// `lowercased().contains(_:)` would allocate and go through Foundation's string search.
    func containsIgnoringASCIICase(_ needle: StaticString) -> Bool {
        var mine = self
        return mine.withUTF8 { text in
            needle.withUTF8Buffer { n in
                guard n.count <= text.count else { return false }
                if n.isEmpty { return true }
                for start in 0...(text.count - n.count) {
                    var i = 0
                    while i < n.count, Self.lower(text[start + i]) == n[i] { i += 1 }
                    if i == n.count { return true }
                }
                return false
            }
        }
    }

    private static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
}
