/// Everything that can go wrong while opening or reading a GGUF file.
///
/// Every case names what was wrong and where: a byte offset from the start of the file,
/// a metadata key or a tensor name. The reader never traps on bad input; it throws one of these.
public enum GGUFError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file could not be opened, stat'ed or mapped (`errno` from the system call).
    case io(path: String, operation: String, errno: Int32)
    /// A read of `needed` bytes at byte offset `at` would run past the end of the file.
    case truncated(at: Int, needed: Int)
    /// The first four bytes are not "GGUF".
    case badMagic(UInt32)
    /// The version field is not one this reader understands (2 and 3; a big-endian file also lands here).
    case unsupportedVersion(UInt32)
    /// A count or length read at byte offset `at` is larger than the rest of the file could hold.
    case absurdCount(what: String, count: UInt64, at: Int)
    /// A string at byte offset `at` is not valid UTF-8.
    case invalidUTF8(at: Int)
    /// A metadata value (or array element) type id is not a GGUF value type.
    case invalidValueType(key: String, type: UInt32)
    /// Arrays nested deeper than the reader allows.
    case arrayNestingTooDeep(key: String)
    /// The same metadata key appears twice.
    case duplicateKey(String)
    /// `general.alignment` is not a non-zero power of two integer.
    case badAlignment(String)
    /// The same tensor name appears twice.
    case duplicateTensor(String)
    /// A tensor has zero or more than four dimensions.
    case invalidDimensionCount(name: String, count: UInt32)
    /// A tensor dimension is zero, does not fit in `Int`, or the element count / byte size overflows.
    case invalidShape(name: String, shape: [UInt64])
    /// The tensor's row length (first dimension) is not a multiple of its block size.
    case rowNotBlockAligned(name: String, rowLength: Int, blockSize: Int)
    /// A tensor's offset is not a multiple of the file's alignment.
    case misalignedTensor(name: String, offset: UInt64)
    /// A tensor's bytes do not lie inside the data section of the file.
    case tensorOutOfBounds(name: String)
    /// The tensor's ggml type is one this reader cannot size (the engine refuses it).
    case unsupportedTensorType(name: String, typeID: UInt32)
    /// No tensor with this name.
    case noSuchTensor(String)

    public var description: String {
        switch self {
        case let .io(path, operation, errno):
            return "GGUF: \(operation) failed for \(path) (errno \(errno))"
        case let .truncated(at, needed):
            return "GGUF: file truncated: needed \(needed) byte(s) at offset \(at)"
        case let .badMagic(magic):
            return "GGUF: bad magic 0x\(String(magic, radix: 16)) (expected \"GGUF\")"
        case let .unsupportedVersion(version):
            return "GGUF: unsupported version \(version) (supported: 2, 3; little-endian only)"
        case let .absurdCount(what, count, at):
            return "GGUF: \(what) \(count) at offset \(at) exceeds what the rest of the file can hold"
        case let .invalidUTF8(at):
            return "GGUF: string at offset \(at) is not valid UTF-8"
        case let .invalidValueType(key, type):
            return "GGUF: metadata key \"\(key)\" has invalid value type \(type)"
        case let .arrayNestingTooDeep(key):
            return "GGUF: metadata key \"\(key)\" nests arrays too deeply"
        case let .duplicateKey(key):
            return "GGUF: duplicate metadata key \"\(key)\""
        case let .badAlignment(detail):
            return "GGUF: bad general.alignment: \(detail)"
        case let .duplicateTensor(name):
            return "GGUF: duplicate tensor \"\(name)\""
        case let .invalidDimensionCount(name, count):
            return "GGUF: tensor \"\(name)\" has \(count) dimensions (allowed 1...4)"
        case let .invalidShape(name, shape):
            return "GGUF: tensor \"\(name)\" has an invalid shape \(shape)"
        case let .rowNotBlockAligned(name, rowLength, blockSize):
            return "GGUF: tensor \"\(name)\" row length \(rowLength) is not a multiple of the block size \(blockSize)"
        case let .misalignedTensor(name, offset):
            return "GGUF: tensor \"\(name)\" offset \(offset) is not a multiple of the alignment"
        case let .tensorOutOfBounds(name):
            return "GGUF: tensor \"\(name)\" lies outside the file's data section"
        case let .unsupportedTensorType(name, typeID):
            return "GGUF: tensor \"\(name)\" has unsupported ggml type \(GGUFTensorType(rawValue: typeID))"
        case let .noSuchTensor(name):
            return "GGUF: no tensor named \"\(name)\""
        }
    }
}
