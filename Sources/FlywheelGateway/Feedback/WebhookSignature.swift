import COpenSSL

/// `x-flywheel-signature: sha256=<hex HMAC-SHA256 of the raw body>` verification for feedback webhooks.
public struct WebhookSignature: Sendable {
    private let secret: [UInt8]

    public init(secret: String) { self.secret = Array(secret.utf8) }

    /// The header value a sender should put on `body`.
    public func sign(_ body: [UInt8]) -> String {
        "sha256=" + hmac(body).map { String($0, radix: 16).leftPadded(to: 2) }.joined()
    }

    /// True when `header` carries the right HMAC; compared in constant time.
    public func verify(header: String?, body: [UInt8]) -> Bool {
        guard let header, header.hasPrefix("sha256=") else { return false }
        let hex = Array(header.utf8.dropFirst(7))
        guard hex.count == 64, let given = Self.decodeHex(hex) else { return false }
        let expected = hmac(body)
        return given.withUnsafeBytes { g in
            expected.withUnsafeBytes { e in CRYPTO_memcmp(g.baseAddress, e.baseAddress, 32) == 0 }
        }
    }

    private func hmac(_ body: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        secret.withUnsafeBytes { key in
            body.withUnsafeBytes { data in
                _ = HMAC(EVP_sha256(), key.baseAddress, Int32(key.count),
                         data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, &out, &length)
            }
        }
        return Array(out.prefix(Int(length)))
    }

    private static func decodeHex(_ hex: [UInt8]) -> [UInt8]? {
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(hex.count / 2)
        var i = 0
        while i + 1 < hex.count {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
