/// A ggml tensor element type id, stored in the tensor table as a little-endian `UInt32`.
///
/// Any id can be listed; only F32, F16 and Q8_0 have a known byte layout here:
/// - F32: 4 bytes per element (IEEE binary32, little-endian).
/// - F16: 2 bytes per element (IEEE binary16, little-endian).
/// - Q8_0: blocks of 32 elements along the row, 34 bytes each: an F16 scale `d`
///   followed by 32 `Int8` quants; element `i` of a block is `d * q[i]`.
///   The row length (first dimension) must be a multiple of 32.
public struct GGUFTensorType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public static let f32 = GGUFTensorType(rawValue: 0)
    public static let f16 = GGUFTensorType(rawValue: 1)
    public static let q8_0 = GGUFTensorType(rawValue: 8)

    /// Whether this reader knows the byte layout (and so the byte size) of the type.
    public var isSupported: Bool { layout != nil }

    /// Elements per block and bytes per block for supported types.
    public var layout: (blockSize: Int, blockBytes: Int)? {
        switch rawValue {
        case 0: return (1, 4)
        case 1: return (1, 2)
        case 8: return (32, 34)
        default: return nil
        }
    }

    /// The ggml name for well-known ids, else "type N".
    public var description: String {
        let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
            10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
            24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 30: "BF16",
        ]
        if let name = names[rawValue] { return "\(name) (\(rawValue))" }
        return "type \(rawValue)"
    }
}
