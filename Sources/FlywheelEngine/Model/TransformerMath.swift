#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The small vector operations of the forward pass, one function each (the matrix products live in
/// FlywheelKernels). Pointers are to contiguous floats.
enum TransformerMath {
    /// out = x / sqrt(mean(x²) + ε) ⊙ weight          x, weight, out: (n)
    static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float, count n: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        let scale = 1 / (dot(x, x, count: n) / Float(n) + epsilon).squareRoot()
        for i in 0 ..< n { out[i] = x[i] * scale * weight[i] }
    }

    /// Rotates the first `2 * pairs` dimensions of one head in place: pair i turns by the angle whose
    /// cosine and sine are `cos[i]`, `sin[i]`.                  head: (headDimension)
    static func rotate(
        _ head: UnsafeMutablePointer<Float>, cos: UnsafePointer<Float>, sin: UnsafePointer<Float>,
        pairs: Int, style: RoPEStyle
    ) {
        // (a, b) -> (a cos - b sin, a sin + b cos)
        let (stride, offset) = style == .adjacentPairs ? (2, 1) : (1, pairs)
        for i in 0 ..< pairs {
            let ia = i * stride
            let ib = ia + offset
            let a = head[ia]
            let b = head[ib]
            head[ia] = a * cos[i] - b * sin[i]
            head[ib] = a * sin[i] + b * cos[i]
        }
    }

    /// x = exp(x - max) / Σ exp(x - max), in place.        x: (n)
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        let inverse = 1 / exponentiate(x, count: n)
        var i = 0
        while i + 8 <= n {
            store(load(x + i) * inverse, x + i)
            i += 8
        }
        while i < n {
            x[i] *= inverse
            i += 1
        }
    }

    /// x = exp(x - max(x)) in place; returns Σ x afterwards (the softmax denominator).   x: (n)
    static func exponentiate(_ x: UnsafeMutablePointer<Float>, count n: Int) -> Float {
        var maximum = SIMD8<Float>(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            let v = load(x + i)
            maximum.replace(with: v, where: v .> maximum)
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
            // The tail through the same vector exp, so every element gets the same rounding.
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

    /// gate = silu(gate) ⊙ up, in place.           gate, up: (n)
    static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count n: Int) {
        let one = SIMD8<Float>(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let g = load(gate + i)
            store(g / (one + exp(-g)) * load(up + i), gate + i)
            i += 8
        }
        while i < n {
            gate[i] = silu(gate[i]) * up[i]
            i += 1
        }
    }

    /// silu(x) = x · σ(x)
    @inline(__always)
    static func silu(_ x: Float) -> Float {
        let e = exp(SIMD8<Float>(repeating: -x))[0]
        return x / (1 + e)
    }

    /// e^x lane by lane, within a few ulp (Cephes' expf polynomial); inputs are clamped to
    /// [-87.3, 88], so very negative inputs give ~1e-38 instead of 0 and large ones ~1.6e38. Only SSE2 operations, so the
    /// baseline x86-64 build vectorizes it (the libm `expf` is one call per element).
    @inline(__always)
    static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        let low = SIMD8<Float>(repeating: -87.3), high = SIMD8<Float>(repeating: 88)
        let x = x.replacing(with: low, where: x .< low).replacing(with: high, where: x .> high)
        // n = round(x / ln 2), by adding 1.5·2²³ so the float addition rounds to an integer.
        let magic = SIMD8<Float>(repeating: 12_582_912)
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        // r = x - n ln 2, with ln 2 split in two so n·ln2_hi is exact.
        let r = x - n * 0.693_359_375 + n * 2.121_944_4e-4
        var p = SIMD8<Float>(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        p = p * (r * r) + r + 1
        // 2ⁿ from its bits: the low mantissa bits of `shifted` hold n + 2²² + 2²³.
        let bits = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
        return p * unsafeBitCast(bits, to: SIMD8<Float>.self)
    }

    /// scores[t] = scale · (query · key t) for t in 0 ..< count (rounded up to 8: `scores` must hold
    /// that many), with the keys in blocks of 8 positions, dimension-major inside a block (see `KVCache`).
    /// Each score is a sum over the dimensions in order, so it does not depend on `count`.
    /// query (hd), keyBlocks (⌈count/8⌉, hd, 8) -> scores (count)
    static func scores(
        query: UnsafePointer<Float>, keyBlocks: UnsafePointer<Float16>, count: Int, dimension hd: Int, scale: Float,
        into scores: UnsafeMutablePointer<Float>
    ) {
        let blocks = (count + 7) / 8
        let blockSize = hd * 8
        var block = 0
        // Four blocks (32 keys) at a time: eight independent vector sums hide the add latency.
        while block + 4 <= blocks {
            let k = keyBlocks + block * blockSize
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
            for d in 0 ..< hd {
                let q = SIMD8<Float>(repeating: query[d])
                s0 += q * load(k + d * 8)
                s1 += q * load(k + blockSize + d * 8)
                s2 += q * load(k + 2 * blockSize + d * 8)
                s3 += q * load(k + 3 * blockSize + d * 8)
            }
            let out = scores + block * 8
            store(s0 * scale, out)
            store(s1 * scale, out + 8)
            store(s2 * scale, out + 16)
            store(s3 * scale, out + 24)
            block += 4
        }
        while block < blocks {
            let k = keyBlocks + block * blockSize
            var s0 = SIMD8<Float>()
            for d in 0 ..< hd { s0 += SIMD8<Float>(repeating: query[d]) * load(k + d * 8) }
            store(s0 * scale, scores + block * 8)
            block += 1
        }
    }

    @inline(__always)
    private static func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
        UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
    }

    /// Eight halves at `p`, widened to floats.
    @inline(__always)
    private static func load(_ p: UnsafePointer<Float16>) -> SIMD8<Float> {
        SIMD8<Float>(UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float16>.self))
    }

    @inline(__always)
    private static func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
    }

    /// Σ a[i]·b[i]                                          a, b: (n)
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
        // SIMD lanes so the reduction vectorizes (the compiler may not reorder a scalar float sum), and
        // four independent accumulators so consecutive additions do not wait on each other.
        @inline(__always) func load(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
            UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
        }
        var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
        var i = 0
        while i + 32 <= n {
            s0 += load(a, i) * load(b, i)
            s1 += load(a, i + 8) * load(b, i + 8)
            s2 += load(a, i + 16) * load(b, i + 16)
            s3 += load(a, i + 24) * load(b, i + 24)
            i += 32
        }
        while i + 8 <= n {
            s0 += load(a, i) * load(b, i)
            i += 8
        }
        var sum = ((s0 + s1) + (s2 + s3)).sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// out = Σ_t weights[t] · rows[t] (or out += that, when `accumulating`): the attention-weighted sum
    /// of value rows. The terms are added in order of t, on top of `out` when accumulating, so a sum
    /// split into consecutive calls is bit-identical to one call.
    /// rows (count, dimension; f16), weights (count) -> out (dimension)
    static func weightedSum(
        _ rows: UnsafePointer<Float16>, weights: UnsafePointer<Float>, count: Int, dimension: Int,
        accumulating: Bool, into out: UnsafeMutablePointer<Float>
    ) {
        @inline(__always) func initial(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> {
            accumulating ? load(p) : SIMD8<Float>()
        }
        // 32 output columns at a time stay in registers while the rows stream past.
        var column = 0
        while column + 32 <= dimension {
            let o = out + column
            var s0 = initial(o), s1 = initial(o + 8), s2 = initial(o + 16), s3 = initial(o + 24)
            for t in 0 ..< count {
                let w = SIMD8<Float>(repeating: weights[t])
                let row = rows + t * dimension + column
                s0 += w * load(row)
                s1 += w * load(row + 8)
                s2 += w * load(row + 16)
                s3 += w * load(row + 24)
            }
            store(s0, o)
            store(s1, o + 8)
            store(s2, o + 16)
            store(s3, o + 24)
            column += 32
        }
        while column < dimension {
            var sum: Float = accumulating ? out[column] : 0
            for t in 0 ..< count { sum += weights[t] * Float(rows[t * dimension + column]) }
            out[column] = sum
            column += 1
        }
    }
}
