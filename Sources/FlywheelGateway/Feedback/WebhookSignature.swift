import COpenSSL

/// Verifies `x-flywheel-signature` on feedback webhooks. Two forms:
/// - `sha256=<hex HMAC-SHA256 of the raw body>`;
/// - `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` (the Stripe-style form): the timestamp is
///   signed with the body and must be within `tolerance` of the daemon's clock, so a captured request
///   cannot be replayed later. Several `v1=` values may be given (a sender rotating secrets).
public struct WebhookSignature: Sendable {
    private let secret: [UInt8]
    /// Seconds a signed timestamp may differ from now.
    public let tolerance: Double

    public init(secret: String, tolerance: Double = 300) {
        precondition(!secret.isEmpty, "an empty webhook secret verifies signatures anyone can make")
        self.secret = Array(secret.utf8)
        self.tolerance = tolerance
    }

    public enum Verdict: Sendable, Equatable {
        case valid
        /// Correctly signed, but its timestamp is outside the tolerance window.
        case stale
        case invalid
    }

    /// The header value a sender should put on `body` (the plain form).
    public func sign(_ body: [UInt8]) -> String {
        "sha256=" + Self.hex(hmac(body))
    }

    /// The timestamped header value for `body` signed at `timestamp` (Unix seconds).
    public func sign(_ body: [UInt8], timestamp: Int64) -> String {
        "t=\(timestamp),v1=" + Self.hex(hmac(Array("\(timestamp).".utf8) + body))
    }

    /// Checks `header` against `body`; MACs are compared in constant time.
    public func verify(header: String?, body: [UInt8], nowSeconds: Int64) -> Verdict {
        guard let header, header.utf8.count <= 1024 else { return .invalid }
        if header.hasPrefix("sha256=") {
            guard let given = Self.decodeHex(Array(header.utf8.dropFirst(7))) else { return .invalid }
            return Self.equal(given, hmac(body)) ? .valid : .invalid
        }
        var timestamp: Int64?
        var candidates: [[UInt8]] = []
        for part in header.split(separator: ",") {
            let item = part.trimmingCharacters(in: " ")
            if item.hasPrefix("t=") {
                guard timestamp == nil, let t = Int64(item.dropFirst(2)) else { return .invalid }
                timestamp = t
            } else if item.hasPrefix("v1=") {
                guard let mac = Self.decodeHex(Array(item.utf8.dropFirst(3))) else { return .invalid }
                candidates.append(mac)
            }
        }
        guard let timestamp, !candidates.isEmpty, candidates.count <= 8 else { return .invalid }
        let expected = hmac(Array("\(timestamp).".utf8) + body)
        guard candidates.contains(where: { Self.equal($0, expected) }) else { return .invalid }
        return abs(Double(nowSeconds) - Double(timestamp)) <= tolerance ? .valid : .stale
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

    private static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == 32, b.count == 32 else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, 32) == 0 } }
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    private static func decodeHex(_ hex: [UInt8]) -> [UInt8]? {
        guard hex.count == 64 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: c - 0x30
            case 0x41...0x46: c - 0x41 + 10
            case 0x61...0x66: c - 0x61 + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(32)
        var i = 0
        while i + 1 < hex.count {
            guard let hi = nibble(hex[i]), let lo = nibble(hex[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
