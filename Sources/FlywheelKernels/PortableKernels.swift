/// Plain Swift kernels: correct on any CPU and for any `Int8` on both sides, the reference the
/// fast paths are tested against and the fallback where AVX2 is missing or disabled.
///
/// Quants are read as `Int16` lanes and sign-extended by shifts, multiplied in 16 bits (a product
/// of two `Int8`s fits) and summed in 32 bits, again by shifts: all baseline SSE2 / NEON work
/// (widening `SIMD32<Int8>` directly compiles to a per-element loop, and 32-bit multiplies need
/// SSE4.1). On x86-64 the f16 scales are widened by bit arithmetic, since without F16C every
/// `Float(Float16)` is a library call.
public enum PortableKernels {
    /// Dot product of two Q8_0 rows of `blocks` blocks each.
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        rowDot(scale: a, quants: a + 2, step: Q8Block.byteCount, b, blocks: blocks)
    }

    /// Dot product of a weight row whose block j keeps its scale at `scale + j * step` and its quants at
    /// `quants + j * step` (either `Q8Layout`) with a quantized activation row `b`.
    @inline(__always)
    static func rowDot(
        scale: UnsafeRawPointer, quants: UnsafeRawPointer, step: Int, _ b: UnsafeRawPointer, blocks: Int
    ) -> Float {
        var sum: Float = 0
        for block in 0 ..< blocks {
            let pb = b + block &* Q8Block.byteCount
            let da = halfToFloat((scale + block &* step).loadUnaligned(as: UInt16.self))
            let db = halfToFloat(pb.loadUnaligned(as: UInt16.self))
            sum += da * db * Float(blockSum(quants + block &* step, pb + 2))
        }
        return sum
    }

    /// The exact integer dot product of the 32 quants at `qa` and `qb`, for any `Int8` values.
    @inline(__always)
    static func blockSum(_ qa: UnsafeRawPointer, _ qb: UnsafeRawPointer) -> Int32 {
        let va = qa.loadUnaligned(as: SIMD16<Int16>.self)
        let vb = qb.loadUnaligned(as: SIMD16<Int16>.self)
        // Low and high byte of each lane, sign-extended; |product| <= 128 * 128 fits an Int16.
        let low = ((va &<< 8) &>> 8) &* ((vb &<< 8) &>> 8)
        let high = (va &>> 8) &* (vb &>> 8)
        // Each Int32 lane holds two Int16 products: add both halves, sign-extended.
        let l = unsafeBitCast(low, to: SIMD8<Int32>.self)
        let h = unsafeBitCast(high, to: SIMD8<Int32>.self)
        let sums = ((l &<< 16) &>> 16) &+ (l &>> 16) &+ ((h &<< 16) &>> 16) &+ (h &>> 16)
        return sums.wrappedSum()
    }

    /// The f16 `bits` as a Float (finite values, including subnormals; files hold no others in scales).
    @inline(__always)
    static func halfToFloat(_ bits: UInt16) -> Float {
        #if arch(x86_64)
        // Move exponent and mantissa into place, then rebias by 2^112 (exact, handles subnormals).
        let magnitude = Float(bitPattern: UInt32(bits & 0x7FFF) << 13) * 0x1p112
        let value = Float(bitPattern: magnitude.bitPattern | UInt32(bits & 0x8000) << 16)
        return bits & 0x7C00 == 0x7C00 ? Float(Float16(bitPattern: bits)) : value
        #else
        return Float(Float16(bitPattern: bits))
        #endif
    }

    /// `out[r] = W[r] · x` for `r` in `rows`. W (rows, columns) @ x (columns) -> out (rows)
    public static func matVec(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        let blocks = w.columns / Q8Block.count
        for r in rows {
            let row = w.blocks(ofRow: r)
            out[r] = rowDot(scale: row.scale, quants: row.quants, step: row.step, x, blocks: blocks)
        }
    }

    /// `out[b * outStride + r] = W[r] · x[b]` for `r` in `rows`, `b` in `0 ..< batch`.
    /// W (rows, columns) @ X (batch, columns)ᵀ -> out (batch, rows)
    public static func matMul(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        let blocks = w.columns / Q8Block.count
        let xStride = w.rowStride
        for r in rows {
            let row = w.blocks(ofRow: r)
            for b in 0 ..< batch {
                out[b &* outStride &+ r] = rowDot(
                    scale: row.scale, quants: row.quants, step: row.step, x + b &* xStride, blocks: blocks)
            }
        }
    }

    /// Quantizes `count` floats (a multiple of 32) into Q8_0 blocks at `out`, the way ggml's
    /// reference does: per block `d = max|x| / 127`, `q = round(x / d)` (halves away from zero),
    /// and `d` stored as f16. Quants stay within -127...127.
    public static func quantize(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        for block in 0 ..< count / Q8Block.count {
            let src = x + block &* Q8Block.count
            let dst = out + block &* Q8Block.byteCount
            var amax: Float = 0
            for i in 0 ..< Q8Block.count { amax = max(amax, abs(src[i])) }
            let d = amax / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            dst.storeBytes(of: Float16(d).bitPattern, as: UInt16.self)
            let quants = (dst + 2).assumingMemoryBound(to: Int8.self)
            for i in 0 ..< Q8Block.count {
                quants[i] = Int8((src[i] * inverse).rounded(.toNearestOrAwayFromZero))
            }
        }
    }
}
