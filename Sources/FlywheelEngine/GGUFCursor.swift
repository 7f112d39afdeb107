/// A bounds-checked little-endian reader over a byte buffer.
///
/// Every read checks the remaining length first and throws `GGUFError.truncated` instead of
/// reading past the end. The buffer must outlive the cursor (the owning `GGUFFile` guarantees it).
struct GGUFCursor {
    let buffer: UnsafeRawBufferPointer
    /// Offset of the next byte to read, from the start of the buffer (= the file).
    private(set) var position: Int = 0

    init(_ buffer: UnsafeRawBufferPointer) {
        self.buffer = buffer
    }

    /// Bytes left after `position`.
    var remaining: Int { buffer.count - position }

    /// Throws unless `count` more bytes can be read.
    func require(_ count: Int) throws {
        guard count >= 0, count <= remaining else { throw GGUFError.truncated(at: position, needed: count) }
    }

    mutating func readInteger<T: FixedWidthInteger>(_: T.Type = T.self) throws -> T {
        let size = MemoryLayout<T>.size
        try require(size)
        let raw = buffer.loadUnaligned(fromByteOffset: position, as: T.self)
        position += size
        return T(littleEndian: raw)
    }

    mutating func readUInt8() throws -> UInt8 { try readInteger() }
    mutating func readUInt32() throws -> UInt32 { try readInteger() }
    mutating func readUInt64() throws -> UInt64 { try readInteger() }

    mutating func readFloat32() throws -> Float { Float(bitPattern: try readInteger(UInt32.self)) }
    mutating func readFloat64() throws -> Double { Double(bitPattern: try readInteger(UInt64.self)) }

    /// A count stored as `UInt64`, checked so that `count * minimumElementSize` bytes remain.
    mutating func readCount(_ what: String, minimumElementSize: Int) throws -> Int {
        let at = position
        let raw = try readUInt64()
        let perElement = UInt64(max(minimumElementSize, 1))
        guard raw <= UInt64(remaining) / perElement else {
            throw GGUFError.absurdCount(what: what, count: raw, at: at)
        }
        return Int(raw)
    }

    /// A GGUF string: `UInt64` byte length, then that many bytes of UTF-8.
    mutating func readString() throws -> String {
        let at = position
        let length = try readCount("string length", minimumElementSize: 1)
        let bytes = UnsafeRawBufferPointer(rebasing: buffer[position ..< position + length])
        guard let string = String(validating: bytes, as: UTF8.self) else { throw GGUFError.invalidUTF8(at: at) }
        position += length
        return string
    }
}
