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
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Float {
        // Eight lanes so the reduction vectorizes (a scalar float sum may not be reordered by the compiler).
        var lanes = SIMD8<Float>()
        var i = 0
        while i + 8 <= n {
            lanes += UnsafeRawPointer(a + i).loadUnaligned(as: SIMD8<Float>.self)
                * UnsafeRawPointer(b + i).loadUnaligned(as: SIMD8<Float>.self)
            i += 8
        }
        var sum = lanes.sum()
        while i < n {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// y += α·x                                              x, y: (n)
    static func addScaled(_ x: UnsafePointer<Float>, _ alpha: Float, to y: UnsafeMutablePointer<Float>, count n: Int) {
        let alphas = SIMD8<Float>(repeating: alpha)
        var i = 0
        while i + 8 <= n {
            let sum = UnsafeRawPointer(y + i).loadUnaligned(as: SIMD8<Float>.self)
                + alphas * UnsafeRawPointer(x + i).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + i).storeBytes(of: sum, as: SIMD8<Float>.self)
            i += 8
        }
        while i < n {
            y[i] += alpha * x[i]
            i += 1
        }
    }
}
