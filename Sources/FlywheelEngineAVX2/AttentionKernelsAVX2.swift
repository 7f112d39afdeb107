#if arch(x86_64)
internal import _Builtin_intrinsics.intel

/// The inner loops of attention (q·k scores, softmax exponentials, the weighted sum of values) for
/// x86-64 CPUs with AVX2 and FMA: eight floats per instruction and fused multiply-adds, where the
/// baseline x86-64 build of `FlywheelEngine` gets four per instruction and separate multiplies and adds.
///
/// Compiled for Haswell-class CPUs: calling anything here on a CPU without AVX2 and FMA is an illegal
/// instruction. The engine calls in only when `KernelPath.active` is not `.portable` (which checks the CPU);
/// functions are `@inline(never)` so no AVX2 code is inlined into a baseline caller. Same contracts as
/// the portable versions in the engine's `TransformerMath`.
public enum AttentionKernelsAVX2 {
    /// scores[t] = scale · (query · key t) for t in 0 ..< count, rounded up to a multiple of 8 (`scores`
    /// must hold that many). Keys (f16) come in blocks of 8 positions, dimension-major inside a block.
    /// query (hd), keyBlocks (⌈count/8⌉, hd, 8) -> scores (⌈count/8⌉·8)
    @inline(never)
    public static func scores(
        query: UnsafePointer<Float>, keyBlocks: UnsafePointer<Float16>, count: Int, dimension hd: Int, scale: Float,
        into scores: UnsafeMutablePointer<Float>
    ) {
        let blocks = (count + 7) / 8
        let size = hd * 8
        let factor = _mm256_set1_ps(scale)
        var block = 0
        // Eight blocks (64 keys) at a time: eight independent sums cover the FMA latency.
        while block + 8 <= blocks {
            let k = keyBlocks + block * size
            var s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps()
            var s3 = _mm256_setzero_ps(), s4 = _mm256_setzero_ps(), s5 = _mm256_setzero_ps()
            var s6 = _mm256_setzero_ps(), s7 = _mm256_setzero_ps()
            for d in 0 ..< hd {
                let q = _mm256_set1_ps(query[d])
                let p = k + d * 8
                s0 = _mm256_fmadd_ps(q, half8(p), s0)
                s1 = _mm256_fmadd_ps(q, half8(p + size), s1)
                s2 = _mm256_fmadd_ps(q, half8(p + 2 * size), s2)
                s3 = _mm256_fmadd_ps(q, half8(p + 3 * size), s3)
                s4 = _mm256_fmadd_ps(q, half8(p + 4 * size), s4)
                s5 = _mm256_fmadd_ps(q, half8(p + 5 * size), s5)
                s6 = _mm256_fmadd_ps(q, half8(p + 6 * size), s6)
                s7 = _mm256_fmadd_ps(q, half8(p + 7 * size), s7)
            }
            let out = scores + block * 8
            _mm256_storeu_ps(out, _mm256_mul_ps(s0, factor))
            _mm256_storeu_ps(out + 8, _mm256_mul_ps(s1, factor))
            _mm256_storeu_ps(out + 16, _mm256_mul_ps(s2, factor))
            _mm256_storeu_ps(out + 24, _mm256_mul_ps(s3, factor))
            _mm256_storeu_ps(out + 32, _mm256_mul_ps(s4, factor))
            _mm256_storeu_ps(out + 40, _mm256_mul_ps(s5, factor))
            _mm256_storeu_ps(out + 48, _mm256_mul_ps(s6, factor))
            _mm256_storeu_ps(out + 56, _mm256_mul_ps(s7, factor))
            block += 8
        }
        while block < blocks {
            let k = keyBlocks + block * size
            var s0 = _mm256_setzero_ps()
            for d in 0 ..< hd { s0 = _mm256_fmadd_ps(_mm256_set1_ps(query[d]), half8(k + d * 8), s0) }
            _mm256_storeu_ps(scores + block * 8, _mm256_mul_ps(s0, factor))
            block += 1
        }
    }

    /// x = exp(x - max(x)) in place; returns Σ x afterwards (the softmax denominator).   x: (n)
    // The same source as `TransformerMath.exponentiate` on purpose: compiled here with AVX2/FMA it runs on
    // 8-wide registers with fused multiply-adds, and a module cannot share one file with another.
    @inline(never)
    public static func exponentiate(_ x: UnsafeMutablePointer<Float>, count n: Int) -> Float {
        var maximum = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            maximum = unsafeBitCast(
                _mm256_max_ps(unsafeBitCast(maximum, to: __m256.self), _mm256_loadu_ps(x + i)), to: SIMD8<Float>.self)
            i += 8
        }
        var top = maximum.max()
        for j in i ..< n { top = max(top, x[j]) }
        let shift = SIMD8<Float>(repeating: top)
        var sum = SIMD8<Float>()
        i = 0
        while i + 8 <= n {
            let e = exp(load(x + i) - shift)
            store(e, x + i)
            sum += e
            i += 8
        }
        var total = sum.sum()
        if i < n {
            var tail = SIMD8<Float>(repeating: -.infinity)
            for j in i ..< n { tail[j - i] = x[j] }
            let e = exp(tail - shift)
            for j in i ..< n {
                x[j] = e[j - i]
                total += e[j - i]
            }
        }
        return total
    }

    /// out = Σ_t weights[t] · rows[t] (or out += that, when `accumulating`): the attention-weighted sum
    /// of value rows. The terms are added in order of t, on top of `out` when accumulating, so a sum
    /// split into consecutive calls is bit-identical to one call.
    /// rows (count, dimension; f16), weights (count) -> out (dimension)
    @inline(never)
    public static func weightedSum(
        _ rows: UnsafePointer<Float16>, weights: UnsafePointer<Float>, count: Int, dimension: Int,
        accumulating: Bool, into out: UnsafeMutablePointer<Float>
    ) {
        @inline(__always) func initial(_ p: UnsafeMutablePointer<Float>) -> __m256 {
            accumulating ? _mm256_loadu_ps(p) : _mm256_setzero_ps()
        }
        // 64 output columns at a time stay in eight registers while the rows stream past.
        var column = 0
        while column + 64 <= dimension {
            let o = out + column
            var s0 = initial(o), s1 = initial(o + 8), s2 = initial(o + 16), s3 = initial(o + 24)
            var s4 = initial(o + 32), s5 = initial(o + 40), s6 = initial(o + 48), s7 = initial(o + 56)
            for t in 0 ..< count {
                let w = _mm256_set1_ps(weights[t])
                let p = rows + t * dimension + column
                s0 = _mm256_fmadd_ps(w, half8(p), s0)
                s1 = _mm256_fmadd_ps(w, half8(p + 8), s1)
                s2 = _mm256_fmadd_ps(w, half8(p + 16), s2)
                s3 = _mm256_fmadd_ps(w, half8(p + 24), s3)
                s4 = _mm256_fmadd_ps(w, half8(p + 32), s4)
                s5 = _mm256_fmadd_ps(w, half8(p + 40), s5)
                s6 = _mm256_fmadd_ps(w, half8(p + 48), s6)
                s7 = _mm256_fmadd_ps(w, half8(p + 56), s7)
            }
            _mm256_storeu_ps(o, s0)
            _mm256_storeu_ps(o + 8, s1)
            _mm256_storeu_ps(o + 16, s2)
            _mm256_storeu_ps(o + 24, s3)
            _mm256_storeu_ps(o + 32, s4)
            _mm256_storeu_ps(o + 40, s5)
            _mm256_storeu_ps(o + 48, s6)
            _mm256_storeu_ps(o + 56, s7)
            column += 64
        }
        while column + 8 <= dimension {
            var s0 = initial(out + column)
            for t in 0 ..< count {
                s0 = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), half8(rows + t * dimension + column), s0)
            }
            _mm256_storeu_ps(out + column, s0)
            column += 8
        }
        while column < dimension {
            var sum: Float = accumulating ? out[column] : 0
            for t in 0 ..< count { sum = sum.addingProduct(weights[t], Float(rows[t * dimension + column])) }
            out[column] = sum
            column += 1
        }
    }

    /// e^x lane by lane (Cephes' expf polynomial), inputs clamped to [-87.3, 88]; the same formula as
    /// the engine's portable `TransformerMath.exp`.
    @inline(__always)
    static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let clamped = _mm256_min_ps(
            _mm256_max_ps(unsafeBitCast(x, to: __m256.self), _mm256_set1_ps(-87.3)), _mm256_set1_ps(88))
        let x = unsafeBitCast(clamped, to: SIMD8<Float>.self)
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        let bits = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }

    /// Eight halves at `p` as eight floats (`vcvtph2ps`).
    @inline(__always)
    static func half8(_ p: UnsafePointer<Float16>) -> __m256 {
        _mm256_cvtph_ps(unsafeBitCast(UnsafeRawPointer(p).loadUnaligned(as: SIMD8<UInt16>.self), to: __m128i.self))
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    @inline(__always)
    static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }
}
#endif
