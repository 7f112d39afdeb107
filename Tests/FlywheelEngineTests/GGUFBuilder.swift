/// Builds GGUF bytes by hand (little-endian), so tests can write well-formed and hostile files.
struct GGUFBuilder {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func f32(_ v: Float) { u32(v.bitPattern) }

    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func header(version: UInt32 = 3, tensors: UInt64, kvs: UInt64) {
        bytes.append(contentsOf: Array("GGUF".utf8))
        u32(version)
        u64(tensors)
        u64(kvs)
    }

    mutating func kvU32(_ key: String, _ v: UInt32) {
        string(key)
        u32(4)
        u32(v)
    }

    mutating func kvString(_ key: String, _ v: String) {
        string(key)
        u32(8)
        string(v)
    }

    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }

    mutating func pad(to alignment: Int) {
        while bytes.count % alignment != 0 { bytes.append(0) }
    }

    mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }

    /// A minimal valid file: one F32 tensor "t" of `elements` values 0, 1, 2, ...
    static func oneTensor(elements: Int = 4) -> [UInt8] {
        var b = GGUFBuilder()
        b.header(tensors: 1, kvs: 1)
        b.kvString("general.architecture", "llama")
        b.tensor("t", dims: [UInt64(elements)])
        b.pad(to: 32)
        for i in 0 ..< elements { b.f32(Float(i)) }
        return b.bytes
    }
}
