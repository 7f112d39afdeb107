/// Int8 matrix kernels over Q8_0 blocks. Weights stay quantized; activations are quantized to
/// the same blocks (`Q8Block.quantize`) once per vector, then every dot product is integer work
/// with one float multiply per block.
///
/// These entry points pick the fastest implementation for the CPU. Every function works on a
/// range of output rows so a `ComputePool` can split one product across threads.
public enum Kernels {
    /// Dot product of two Q8_0 rows of `blocks` blocks each.
    @inlinable
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        PortableKernels.dot(a, b, blocks: blocks)
    }

    /// Matrix-vector product for output rows `rows`: `out[r] = W[r] · x` where `x` is one
    /// quantized row of `w.columns` elements.
    /// W (rows, columns) @ x (columns) -> out (rows)
    public static func matVec(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        let blocks = w.columns / Q8Block.count
        for r in rows { out[r] = dot(w.row(r), x, blocks: blocks) }
    }

    /// Matrix-matrix product for output rows `rows`: for each of `batch` quantized input rows
    /// `x[b]` (contiguous, `w.columns` elements each), `out[b * outStride + r] = W[r] · x[b]`.
    /// W (rows, columns) @ X (batch, columns)ᵀ -> out (batch, rows)
    public static func matMul(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        let blocks = w.columns / Q8Block.count
        let xStride = w.rowStride
        for r in rows {
            let row = w.row(r)
            for b in 0 ..< batch { out[b * outStride + r] = dot(row, x + b * xStride, blocks: blocks) }
        }
    }
}

/// Plain Swift kernels: correct on any CPU, the reference the fast paths are tested against.
public enum PortableKernels {
    @inlinable
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        var sum: Float = 0
        for block in 0 ..< blocks {
            let pa = a + block * Q8Block.byteCount
            let pb = b + block * Q8Block.byteCount
            let da = Float(Float16(bitPattern: pa.loadUnaligned(as: UInt16.self)))
            let db = Float(Float16(bitPattern: pb.loadUnaligned(as: UInt16.self)))
            let qa = (pa + 2).assumingMemoryBound(to: Int8.self)
            let qb = (pb + 2).assumingMemoryBound(to: Int8.self)
            var acc: Int32 = 0
            for i in 0 ..< Q8Block.count { acc &+= Int32(qa[i]) &* Int32(qb[i]) }
            sum += da * db * Float(acc)
        }
        return sum
    }
}
