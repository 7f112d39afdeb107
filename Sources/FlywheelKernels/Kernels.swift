#if arch(x86_64)
import FlywheelKernelsAVX2
import FlywheelKernelsAVX512
#endif

/// Int8 matrix kernels over Q8_0 blocks. Weights stay quantized; activations are quantized to
/// the same blocks (`Q8Block.quantize`) once per vector, then every dot product is integer work
/// with one float multiply per block.
///
/// These entry points use the fastest implementation for the CPU (`activePath`). Every function
/// works on a range of output rows so a `ComputePool` can split one product across threads; calls
/// on disjoint row ranges may run concurrently.
///
/// Operand contract: weights may hold any `Int8`; quantized activations (the `x` arguments, the
/// second operand of `dot`) must stay within -127...127, which `Q8Block.quantize` guarantees.
public enum Kernels {
    /// The implementation in use: `.avx512vnni` on CPUs with AVX-512 VNNI, `.avx2` on CPUs with
    /// AVX2+FMA+F16C, `.portable` elsewhere; `FLYWHEEL_KERNELS=avx2` or `=portable` caps it. See `KernelPath`.
    public static var activePath: KernelPath { KernelPath.active }

    /// Dot product of two Q8_0 rows of `blocks` blocks each (`b` is the activation operand).
    public static func dot(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, blocks: Int) -> Float {
        #if arch(x86_64)
        switch KernelPath.active {
        case .avx512vnni: return AVX512Kernels.dot(a, b, blocks: blocks)
        case .avx2: return AVX2Kernels.dot(a, b, blocks: blocks)
        case .portable: break
        }
        #endif
        return PortableKernels.dot(a, b, blocks: blocks)
    }

    /// Matrix-vector product for output rows `rows`: `out[r] = W[r] · x` where `x` is one
    /// quantized row of `w.columns` elements. Used for decode, where W streams from memory.
    /// W (rows, columns) @ x (columns) -> out (rows)
    public static func matVec(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, rows: Range<Int>
    ) {
        #if arch(x86_64)
        if w.layout == .rowGroups {
            // Only the AVX2 kernels read row groups (every fast path implies AVX2).
            if KernelPath.active != .portable {
                AVX2Kernels.matVecGrouped(base: w.base, blocks: w.columns / Q8Block.count, x: x, into: out, rows: rows)
                return
            }
            PortableKernels.matVec(w, x, into: out, rows: rows)
            return
        }
        switch KernelPath.active {
        case .avx512vnni:
            AVX512Kernels.matVec(
                base: w.base, rowStride: w.rowStride, blocks: w.columns / Q8Block.count, x: x, into: out, rows: rows)
            return
        case .avx2:
            AVX2Kernels.matVec(
                base: w.base, rowStride: w.rowStride, blocks: w.columns / Q8Block.count, x: x, into: out, rows: rows)
            return
        case .portable: break
        }
        #endif
        PortableKernels.matVec(w, x, into: out, rows: rows)
    }

    /// Matrix-matrix product for output rows `rows`: for each of `batch` quantized input rows
    /// `x[b]` (contiguous, `w.columns` elements each), `out[b * outStride + r] = W[r] · x[b]`.
    /// Used for prompt processing: each weight block loaded serves several tokens.
    /// W (rows, columns) @ X (batch, columns)ᵀ -> out (batch, rows)
    public static func matMul(
        _ w: Q8Matrix, _ x: UnsafeRawPointer, batch: Int,
        into out: UnsafeMutablePointer<Float>, outStride: Int, rows: Range<Int>
    ) {
        #if arch(x86_64)
        if w.layout == .rowGroups {
            if KernelPath.active != .portable {
                AVX2Kernels.matMulGrouped(
                    base: w.base, blocks: w.columns / Q8Block.count, x: x, xStride: w.rowStride, batch: batch,
                    into: out, outStride: outStride, rows: rows)
                return
            }
            PortableKernels.matMul(w, x, batch: batch, into: out, outStride: outStride, rows: rows)
            return
        }
        switch KernelPath.active {
        case .avx512vnni:
            AVX512Kernels.matMul(
                base: w.base, rowStride: w.rowStride, blocks: w.columns / Q8Block.count, x: x,
                xStride: w.rowStride, batch: batch, into: out, outStride: outStride, rows: rows)
            return
        case .avx2:
            AVX2Kernels.matMul(
                base: w.base, rowStride: w.rowStride, blocks: w.columns / Q8Block.count, x: x,
                xStride: w.rowStride, batch: batch, into: out, outStride: outStride, rows: rows)
            return
        case .portable: break
        }
        #endif
        PortableKernels.matMul(w, x, batch: batch, into: out, outStride: outStride, rows: rows)
    }
}
