/// A ggml tensor element type id, stored in the tensor table as a little-endian `UInt32`.
///
/// Any id can be listed; the types below have a known byte layout (ggml's, all integers and halves
/// little-endian; "f16" is IEEE binary16). A row (first dimension) must be a whole number of blocks.
///
/// Plain types, one element per "block":
/// - F32: 4 bytes (IEEE binary32). F16: 2 bytes. BF16: 2 bytes, the high half of a binary32.
///
/// Blocks of 32 elements; element `j < 16` of a block comes from the low nibble of byte `j` of `qs`,
/// element `j + 16` from its high nibble:
/// - Q4_0 (18 bytes): f16 `d`, 16 bytes `qs`; `x = d * (q - 8)`.
/// - Q4_1 (20 bytes): f16 `d`, f16 `m`, 16 bytes `qs`; `x = d * q + m`.
/// - Q5_0 (22 bytes): f16 `d`, u32 `qh`, 16 bytes `qs`; bit `i` of `qh` is the fifth bit of element
///   `i`; `x = d * (q - 16)`.
/// - Q5_1 (24 bytes): f16 `d`, f16 `m`, u32 `qh`, 16 bytes `qs`; `x = d * q + m`.
/// - Q8_0 (34 bytes): f16 `d`, 32 `Int8` quants; `x = d * q`.
/// - IQ4_NL (18 bytes): f16 `d`, 16 bytes `qs`; `x = d * table[q]` with ggml's 16-entry non-linear table.
///
/// Super-blocks of 256 elements (the K-quants), in sub-blocks of 16 or 32 with their own scales:
/// - Q2_K (84 bytes): 16 bytes `scales` (low nibble: scale, high nibble: min, per 16 elements),
///   64 bytes `qs` (2 bits each), f16 `d`, f16 `dmin`; `x = d * sc * q - dmin * m`.
/// - Q3_K (110 bytes): 32 bytes `hmask` (the third bit, inverted), 64 bytes `qs` (the low 2 bits),
///   12 bytes of sixteen 6-bit signed scales (offset 32), f16 `d`; `x = d * (sc - 32) * q`, q in -4...3.
/// - Q4_K (144 bytes): f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales and eight 6-bit mins
///   (ggml's `get_scale_min_k4` packing), 128 bytes `qs`; per 32 elements `x = d * sc * q - dmin * m`.
/// - Q5_K (176 bytes): as Q4_K, then 32 bytes `qh` (the fifth bit) before the 128 bytes `qs`.
/// - Q6_K (210 bytes): 128 bytes `ql` (low 4 bits), 64 bytes `qh` (high 2 bits), 16 `Int8` scales
///   (per 16 elements), f16 `d`; `x = d * sc * (q - 32)`.
/// - IQ4_XS (136 bytes): f16 `d`, u16 `scales_h`, 4 bytes `scales_l` (eight 6-bit scales, offset 32),
///   128 bytes `qs`; `x = d * (sc - 32) * table[q]` with the IQ4_NL table.
///
/// `Dequantization` expands any of these to floats; the engine requantizes all but Q8_0 to Q8_0 at load.
public struct GGUFTensorType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32

    public init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    public static let f32 = GGUFTensorType(rawValue: 0)
    public static let f16 = GGUFTensorType(rawValue: 1)
    public static let q4_0 = GGUFTensorType(rawValue: 2)
    public static let q4_1 = GGUFTensorType(rawValue: 3)
    public static let q5_0 = GGUFTensorType(rawValue: 6)
    public static let q5_1 = GGUFTensorType(rawValue: 7)
    public static let q8_0 = GGUFTensorType(rawValue: 8)
    public static let q2_K = GGUFTensorType(rawValue: 10)
    public static let q3_K = GGUFTensorType(rawValue: 11)
    public static let q4_K = GGUFTensorType(rawValue: 12)
    public static let q5_K = GGUFTensorType(rawValue: 13)
    public static let q6_K = GGUFTensorType(rawValue: 14)
    public static let iq4_nl = GGUFTensorType(rawValue: 20)
    public static let iq4_xs = GGUFTensorType(rawValue: 23)
    public static let bf16 = GGUFTensorType(rawValue: 30)

    /// Every type with a known layout, in id order.
    public static let supported: [GGUFTensorType] = [
        .f32, .f16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .iq4_nl, .iq4_xs, .bf16,
    ]

    /// Whether this reader knows the byte layout (and so the byte size) of the type.
    public var isSupported: Bool { layout != nil }

    /// Elements per block and bytes per block for supported types.
    public var layout: (blockSize: Int, blockBytes: Int)? {
        switch rawValue {
        case 0: return (1, 4)
        case 1: return (1, 2)
        case 2: return (32, 18)
        case 3: return (32, 20)
        case 6: return (32, 22)
        case 7: return (32, 24)
        case 8: return (32, 34)
        case 10: return (256, 84)
        case 11: return (256, 110)
        case 12: return (256, 144)
        case 13: return (256, 176)
        case 14: return (256, 210)
        case 20: return (32, 18)
        case 23: return (256, 136)
        case 30: return (1, 2)
        default: return nil
        }
    }

    /// The ggml name ("Q4_K") for well-known ids, else "type N".
    public var name: String {
        Self.names[rawValue] ?? "type \(rawValue)"
    }

    /// The ggml name and id ("Q4_K (12)") for well-known ids, else "type N".
    public var description: String {
        Self.names[rawValue].map { "\($0) (\(rawValue))" } ?? "type \(rawValue)"
    }

    private static let names: [UInt32: String] = [
        0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
        10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
        16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
        23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
        34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4",
    ]
}
