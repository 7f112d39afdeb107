import COpenSSL

/// SHA-256 through OpenSSL, for dataset file checksums and the stable hashes that split and deduplicate.
enum SHA256 {
    static func digest(_ bytes: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        bytes.withUnsafeBytes { b in
            _ = EVP_Digest(b.baseAddress, b.count, &out, &length, EVP_sha256(), nil)
        }
        return out
    }

    /// Lowercase hex of `bytes`.
    static func hexString(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 0xF)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first 8 bytes as a number: a stable, well-spread key for splitting and deduplicating.
    static func key(_ bytes: [UInt8]) -> UInt64 {
        digest(bytes).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// SHA-256 of a file written in pieces (the manifest records one per output file).
struct StreamingSHA256 {
    private let context: OpaquePointer

    init() {
        context = EVP_MD_CTX_new()
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
    }

    func finish() -> String {
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &out, &length)
        EVP_MD_CTX_free(context)
        return SHA256.hexString(out)
    }
}
