/// A model-name glob, as routes' `model` gives it: `*` matches any run of characters, `?` exactly one (Unicode
/// scalar); everything else literally. The gateway routes by it and the configuration checks policy targets by it.
/// Matches on UTF-8 bytes: model names come from clients, and turning a long one into `Character`s on the
/// event loop would cost far more than the name (the request's size is already bounded).
public struct ModelPattern: Sendable {
    public let text: String
    private let bytes: [UInt8]
    public let isExact: Bool

    public init(_ text: String) {
        self.text = text
        self.bytes = Array(text.utf8)
        self.isExact = !bytes.contains(UInt8(ascii: "*")) && !bytes.contains(UInt8(ascii: "?"))
    }

    public func matches(_ name: String) -> Bool {
        if isExact { return name == text }
        var name = name
        return name.withUTF8 { s in
            // Iterative glob match with backtracking to the last star: O(pattern x name) at worst, no recursion.
            let star = UInt8(ascii: "*"), any = UInt8(ascii: "?")
            var p = 0, i = 0, lastStar = -1, mark = 0
            while i < s.count {
                if p < bytes.count, bytes[p] == any {
                    p += 1; i += 1
                    while i < s.count, s[i] & 0xC0 == 0x80 { i += 1 }  // the rest of a multi-byte scalar
                } else if p < bytes.count, bytes[p] == s[i] {
                    p += 1; i += 1
                } else if p < bytes.count, bytes[p] == star {
                    lastStar = p; mark = i; p += 1
                } else if lastStar >= 0 {
                    p = lastStar + 1; mark += 1; i = mark
                } else {
                    return false
                }
            }
            while p < bytes.count, bytes[p] == star { p += 1 }
            return p == bytes.count
        }
    }
}
