/// The type id of a GGUF metadata value, stored on disk as a little-endian `UInt32`.
///
/// Sizes on disk: u8/i8/bool 1 byte, u16/i16 2, u32/i32/f32 4, u64/i64/f64 8.
/// A string is a `UInt64` byte length followed by that many UTF-8 bytes (no terminator).
/// An array is a `UInt32` element type, a `UInt64` element count, then the elements back to back.
public enum GGUFValueType: UInt32, Sendable, CaseIterable {
    case uint8 = 0
    case int8 = 1
    case uint16 = 2
    case int16 = 3
    case uint32 = 4
    case int32 = 5
    case float32 = 6
    case bool = 7
    case string = 8
    case array = 9
    case uint64 = 10
    case int64 = 11
    case float64 = 12

    /// The smallest number of bytes one value of this type occupies on disk
    /// (a string is at least its 8-byte length, an array at least its 12-byte header).
    var minimumEncodedSize: Int {
        switch self {
        case .uint8, .int8, .bool: return 1
        case .uint16, .int16: return 2
        case .uint32, .int32, .float32: return 4
        case .uint64, .int64, .float64, .string: return 8
        case .array: return 12
        }
    }
}
