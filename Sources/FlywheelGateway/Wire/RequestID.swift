import Foundation
import COpenSSL

/// Request ids: the key for the log and for feedback.
public enum RequestID {
    /// A client-supplied id is kept when it is 1 to 128 characters of `[A-Za-z0-9._:-]`, so it is safe to log,
    /// to echo in a header and to type on a command line.
    public static func isSane(_ id: String) -> Bool {
        let utf8 = id.utf8
        guard !utf8.isEmpty, utf8.count <= 128 else { return false }
        return utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A)
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: ":") || c == UInt8(ascii: "-")
        }
    }

    /// An id as the log may hold it: a sane id, or a resent one renamed `id#2`, `id#3`, ... (feedback for the
    /// second and later requests that reused a client's id names them so; `flywheel tail` shows them).
    public static func isStoredID(_ id: String) -> Bool {
        guard let hash = id.utf8.lastIndex(of: UInt8(ascii: "#")) else { return isSane(id) }
        let base = id[..<hash], suffix = id.utf8[id.utf8.index(after: hash)...]
        guard (1...9).contains(suffix.count), suffix.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        return isSane(String(base))
    }

    /// A new RFC 9562 UUIDv7: 48 bits of Unix milliseconds, then random bits, so ids sort by time.
    public static func newUUIDv7(nowMillis: UInt64 = UInt64(Date().timeIntervalSince1970 * 1000)) -> String {
        let (randA, randB) = RandomBits.next()
        var b = [UInt8](repeating: 0, count: 16)
        for i in 0..<6 { b[i] = UInt8(truncatingIfNeeded: nowMillis >> (8 * (5 - i))) }
        b[6] = 0x70 | UInt8(randA >> 8)
        b[7] = UInt8(truncatingIfNeeded: randA)
        for i in 0..<8 { b[8 + i] = UInt8(truncatingIfNeeded: randB >> (8 * (7 - i))) }
        b[8] = 0x80 | (b[8] & 0x3F)
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(36)
        for (i, byte) in b.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { out.append(UInt8(ascii: "-")) }
            out.append(hex[Int(byte >> 4)])
            out.append(hex[Int(byte & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The client's id when sane, else a new UUIDv7.
    public static func resolve(clientValue: String?) -> String {
        if let v = clientValue, isSane(v) { return v }
        return newUUIDv7()
    }
}

/// Random bits for request ids from OpenSSL's CSPRNG, which is seeded from the kernel and then runs in user
/// space: no system call per id (the stdlib generator makes one per 8 bytes).
enum RandomBits {
    /// 12 random bits and 64 random bits.
    static func next() -> (UInt16, UInt64) {
        var bytes: (UInt64, UInt16) = (0, 0)
        let ok = withUnsafeMutableBytes(of: &bytes) { RAND_bytes($0.baseAddress!.assumingMemoryBound(to: UInt8.self), 10) }
        if ok != 1 {
            var rng = SystemRandomNumberGenerator()
            bytes = (rng.next(), UInt16.random(in: 0...UInt16.max, using: &rng))
        }
        return (bytes.1 & 0x0FFF, bytes.0)
    }
}
