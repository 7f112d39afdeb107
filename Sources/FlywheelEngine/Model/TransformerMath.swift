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
        var maximum = -Float.infinity
        for i in 0 ..< n { maximum = max(maximum, x[i]) }
        var sum: Float = 0
        for i in 0 ..< n {
            x[i] = exp(x[i] - maximum)
            sum += x[i]
        }
        let inverse = 1 / sum
        for i in 0 ..< n { x[i] *= inverse }
    }

    /// silu(x) = x · σ(x)
    @inline(__always)
    static func silu(_ x: Float) -> Float { x / (1 + exp(-x)) }

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

    /// out = Σ_t weights[t] · rows[t]: the attention-weighted sum of value rows.
    /// rows (count, dimension), weights (count) -> out (dimension)
    static func weightedSum(
        _ rows: UnsafePointer<Float>, weights: UnsafePointer<Float>, count: Int, dimension: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        @inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
            UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
        }
        @inline(__always) func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
            UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
        }
        // 32 output columns at a time stay in registers while the rows stream past.
        var column = 0
        while column + 32 <= dimension {
            var s0 = SIMD8<Float>(), s1 = SIMD8<Float>(), s2 = SIMD8<Float>(), s3 = SIMD8<Float>()
            for t in 0 ..< count {
                let w = SIMD8<Float>(repeating: weights[t])
                let row = rows + t * dimension + column
                s0 += w * load(row)
                s1 += w * load(row + 8)
                s2 += w * load(row + 16)
                s3 += w * load(row + 24)
            }
            store(s0, out + column)
            store(s1, out + column + 8)
            store(s2, out + column + 16)
            store(s3, out + column + 24)
            column += 32
        }
        while column < dimension {
            var sum: Float = 0
            for t in 0 ..< count { sum += weights[t] * rows[t * dimension + column] }
            out[column] = sum
            column += 1
        }
    }
}
