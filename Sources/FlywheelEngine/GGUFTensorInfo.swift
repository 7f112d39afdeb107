/// One entry of a GGUF tensor table.
///
/// On disk: name (GGUF string), `UInt32` dimension count (1...4 accepted here),
/// that many `UInt64` dimensions, `UInt32` ggml type, `UInt64` offset relative to the
/// start of the data section (a multiple of the file's alignment).
///
/// `shape` is in ggml order: `shape[0]` is the innermost (contiguous, row) dimension.
public struct GGUFTensorInfo: Equatable, Sendable {
    public let name: String
    /// Dimensions, innermost first (ggml `ne` order). Every entry is at least 1.
    public let shape: [Int]
    public let type: GGUFTensorType
    /// Byte offset of the tensor's data from the start of the data section.
    public let offset: Int
    /// Product of the dimensions.
    public let elementCount: Int
    /// Size of the tensor's data in bytes; `nil` when the type is not supported (its size is unknown).
    public let byteCount: Int?

    public init(name: String, shape: [Int], type: GGUFTensorType, offset: Int, elementCount: Int, byteCount: Int?) {
        self.name = name
        self.shape = shape
        self.type = type
        self.offset = offset
        self.elementCount = elementCount
        self.byteCount = byteCount
    }
}
