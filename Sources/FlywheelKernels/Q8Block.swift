#if arch(x86_64)
import FlywheelKernelsAVX2
#endif

/// The Q8_0 block format, shared by weights and quantized activations.
///
/// A block holds 32 consecutive elements of one row in 34 bytes: an IEEE binary16 scale `d`
/// (little-endian) followed by 32 `Int8` quants; element `i` is `d * q[i]`. Rows are whole
/// blocks, so a row of `n` elements (`n % 32 == 0`) takes `n / 32 * 34` bytes.
public enum Q8Block {
    /// Elements per block.
    public static let count = 32
    /// Bytes per block: 2 (f16 scale) + 32 (int8 quants).
    public static let byteCount = 34

    /// Bytes taken by a row of `elements` elements (`elements` must be a multiple of 32).
    @inlinable
    public static func rowByteCount(_ elements: Int) -> Int { elements / count * byteCount }

    /// Quantizes `count` floats (a multiple of 32) into Q8_0 blocks at `out`, the way ggml does:
    /// per block `d = max|x| / 127`, `q = round(x / d)` (halves away from zero), `d` stored as f16.
    /// Quants stay within -127...127, as the kernels' activation operand requires. All kernel
    /// paths give bit-identical blocks.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        precondition(count % Self.count == 0, "Q8_0 rows are whole blocks of 32")
        #if arch(x86_64)
        if KernelPath.active.hasAVX2 { AVX2Kernels.quantize(x, count: count, into: out); return }
        #endif
        PortableKernels.quantize(x, count: count, into: out)
    }

    /// Expands `count` elements (a multiple of 32) of Q8_0 blocks at `blocks` into floats.
    public static func dequantize(_ blocks: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(count % Self.count == 0, "Q8_0 rows are whole blocks of 32")
        for block in 0 ..< count / Self.count {
            let src = blocks + block * byteCount
            let d = Float(Float16(bitPattern: src.loadUnaligned(as: UInt16.self)))
            let quants = (src + 2).assumingMemoryBound(to: Int8.self)
            for i in 0 ..< Self.count { out[block * Self.count + i] = d * Float(quants[i]) }
        }
    }
}
