/// GPT-2's reversible map between bytes and printable Unicode scalars, used by byte-level BPE
/// vocabularies so that every byte has a visible one-character token ("Ġ" is the space byte 0x20).
///
/// Bytes that are printable Latin-1 (`!`...`~`, `¡`...`¬`, `®`...`ÿ`) stand for themselves; the other
/// 68 bytes (controls, space, DEL, NBSP, soft hyphen) map in byte order to U+0100, U+0101, ...
enum ByteLevelAlphabet {
    /// The scalar value that stands for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for byte in 0 ..< 256 {
            if isSelfMapped(byte) {
                table[byte] = UInt32(byte)
            } else {
                table[byte] = next
                next += 1
            }
        }
        return table
    }()

    /// The byte a scalar stands for, or `nil` for scalars outside the alphabet.
    static func byte(for scalar: Unicode.Scalar) -> UInt8? {
        let value = scalar.value
        if value < 256 { return isSelfMapped(Int(value)) ? UInt8(value) : nil }
        guard value < 256 + 68 else { return nil }
        return byteForShifted[Int(value - 256)]
    }

    /// The alphabet's spelling of `bytes` as UTF-8 (what a vocabulary entry for them looks like).
    static func encode(_ bytes: some Sequence<UInt8>, into output: inout [UInt8]) {
        for byte in bytes {
            let value = scalarForByte[Int(byte)]
            if value < 0x80 {
                output.append(UInt8(value))
            } else {
                // Every scalar in the alphabet is below U+0800: two UTF-8 bytes.
                output.append(UInt8(0xC0 | (value >> 6)))
                output.append(UInt8(0x80 | (value & 0x3F)))
            }
        }
    }

    /// The bytes a vocabulary entry spells; scalars outside the alphabet are kept as their UTF-8.
    static func decode(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            if let byte = byte(for: scalar) {
                bytes.append(byte)
            } else {
                bytes.append(contentsOf: String(scalar).utf8)
            }
        }
        return bytes
    }

    private static func isSelfMapped(_ byte: Int) -> Bool {
        (33 ... 126).contains(byte) || (161 ... 172).contains(byte) || (174 ... 255).contains(byte)
    }

    private static let byteForShifted: [UInt8] = {
        var table: [UInt8] = []
        for byte in 0 ..< 256 where !isSelfMapped(byte) { table.append(UInt8(byte)) }
        return table
    }()
}
