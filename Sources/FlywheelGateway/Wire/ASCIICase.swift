extension StringProtocol {
    /// Case-insensitive ASCII prefix test without allocating (header names and media types are ASCII).
    func hasPrefixIgnoringASCIICase(_ prefix: String) -> Bool {
        var mine = utf8.makeIterator()
        for p in prefix.utf8 {
            guard let c = mine.next(), Self.lower(c) == Self.lower(p) else { return false }
        }
        return true
    }

    /// Case-insensitive ASCII equality without allocating.
    func equalsIgnoringASCIICase(_ other: String) -> Bool {
        utf8.count == other.utf8.count && hasPrefixIgnoringASCIICase(other)
    }

    private static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
}
