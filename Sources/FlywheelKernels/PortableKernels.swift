/// Plain Swift kernels: correct on any CPU and for any `Int8` on both sides, the reference the
/// fast paths are tested against and the fallback where AVX2 is missing or disabled.
///
/// Quants are read four at a time as `Int32` lanes and sign-extended by shifts, which the
/// compiler vectorises well on every target (widening `SIMD32<Int8>` directly does not).
public enum PortableKernels {
    /// Dot product of two Q8_0 rows of `blocks` blocks each.
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for block in 0 ..< blocks {
            let pa = a + block &* Q8Block.byteCount
            let pb = b + block &* Q8Block.byteCount
            let da = Float(Float16(bitPattern: pa.loadUnaligned(as: UInt16.self)))
            let db = Float(Float16(bitPattern: pb.loadUnaligned(as: UInt16.self)))
            sum += da * db * Float(blockSum(pa + 2, pb + 2))
        }
        return sum
    }

    /// The exact integer dot product of the 32 quants at `qa` and `qb`.
    @inline(__always)
    static func blockSum(_ qa: UnsafeRawPointer, _ qb: UnsafeRawPointer) -> Int32 {
        let va = qa.loadUnaligned(as: SIMD8<Int32>.self)
        let vb = qb.loadUnaligned(as: SIMD8<Int32>.self)
        // Byte k of each lane, sign-extended: shift it to the top, then arithmetic-shift it down.
        var acc = ((va &<< 24) &>> 24) &* ((vb &<< 24) &>> 24)
        acc &+= ((va &<< 16) &>> 24) &* ((vb &<< 16) &>> 24)
        acc &+= ((va &<< 8) &>> 24) &* ((vb &<< 8) &>> 24)
        acc &+= (va &>> 24) &* (vb &>> 24)
        return acc.wrappedSum()
    }

    /// `out[r] = W[r] · x` for `r` in `rows`. W (rows, columns) @ x (columns) -> out (rows)
    public static func matVec(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        let blocks = w.columns / Q8Block.count
        for r in rows { out[r] = dot(w.row(r), x, blocks: blocks) }
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
            let row = w.row(r)
            for b in 0 ..< batch { out[b &* outStride &+ r] = dot(row, x + b &* xStride, blocks: blocks) }
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
