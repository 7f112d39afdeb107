import COpenSSL

/// The form of a virtual API key, `fw_<id>_<secret>`, and the salted hash the log stores instead of it. The id
/// (12 hex digits) is public: requests find their key by it. The secret (48 hex digits, 192 random bits) is
/// checked against `SHA-256(salt || secret)` with a per-key 16-byte salt, compared in constant time. A fast
/// hash is enough here: the secret is random and long, so there is no dictionary to run through.
public enum VirtualKeyCredential {
    public static let prefix = "fw_"
    public static let idDigits = 12
    public static let secretDigits = 48

    /// A fresh key and what to store of it.
    public struct Issued: Sendable {
        /// The whole key, to show once and never again.
        public let key: String
        public let id: String
        public let saltHex: String
        public let hashHex: String
    }

    /// A new random key. `nil` only if the system's random source fails.
    public static func issue() -> Issued? {
        guard let idBytes = randomBytes(idDigits / 2), let secretBytes = randomBytes(secretDigits / 2),
              let salt = randomBytes(16) else { return nil }
        let id = hex(idBytes), secret = hex(secretBytes)
        return Issued(key: prefix + id + "_" + secret, id: id, saltHex: hex(salt),
                      hashHex: hex(digest(salt: salt, secret: Array(secret.utf8))))
    }

    /// The id and secret of `token` when it has the form of a virtual key (exact lengths, lowercase hex), else nil.
    public static func parse(_ token: some StringProtocol) -> (id: String, secret: String)? {
        let bytes = Array(token.utf8)
        guard bytes.count == prefix.utf8.count + idDigits + 1 + secretDigits, bytes.starts(with: prefix.utf8) else { return nil }
        let idStart = prefix.utf8.count, secretStart = idStart + idDigits + 1
        guard bytes[secretStart - 1] == UInt8(ascii: "_") else { return nil }
        let id = bytes[idStart..<(secretStart - 1)], secret = bytes[secretStart...]
        guard id.allSatisfy(isHexDigit), secret.allSatisfy(isHexDigit) else { return nil }
        return (String(decoding: id, as: UTF8.self), String(decoding: secret, as: UTF8.self))
    }

    /// Whether `secret` hashes to `hashHex` under `saltHex`; the comparison takes the same time wherever the bytes differ.
    public static func verify(secret: String, saltHex: String, hashHex: String) -> Bool {
        guard let salt = unhex(saltHex), let expected = unhex(hashHex), expected.count == 32 else { return false }
        return constantTimeEqual(digest(salt: salt, secret: Array(secret.utf8)), expected)
    }

    /// SHA-256 of `salt || secret`.
    static func digest(salt: [UInt8], secret: [UInt8]) -> [UInt8] {
        sha256(salt + secret)
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        bytes.withUnsafeBytes { data in
            _ = EVP_Digest(data.baseAddress, data.count, &out, &length, EVP_sha256(), nil)
        }
        return out
    }

    /// Equal lengths and bytes, in time that depends on the length only.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, !a.isEmpty else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }

    static func randomBytes(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        return RAND_bytes(&bytes, Int32(count)) == 1 ? bytes : nil
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let bytes = Array(text.utf8)
        guard bytes.count % 2 == 0, bytes.count <= 128 else { return nil }
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard let hi = nibble(bytes[i]), let lo = nibble(bytes[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(c) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(c)
    }
}
