#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The f32 vector operations a transformer needs per token besides the int8 products: RMS norm,
/// softmax, SiLU-gated products, and dot/axpy for attention over an f32 KV cache.
///
/// Written with `SIMD8<Float>` and eight-wide accumulators, so they vectorise on any CPU without
/// the compiler having to reassociate float sums; tails shorter than 8 run scalar. Results differ
/// from a left-to-right loop only by float rounding. Pointers may not overlap unless stated.
public enum FloatKernels {
    /// `Σ a[i] * b[i]` over `count` elements.
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int) -> Float {
        var acc0 = SIMD8<Float>(), acc1 = acc0
        var i = 0
        while i &+ 16 <= count {
            acc0 += load(a + i) * load(b + i)
            acc1 += load(a + (i &+ 8)) * load(b + (i &+ 8))
            i &+= 16
        }
        if i &+ 8 <= count {
            acc0 += load(a + i) * load(b + i)
            i &+= 8
        }
        var sum = (acc0 + acc1).sum()
        while i < count { sum += a[i] * b[i]; i &+= 1 }
        return sum
    }

    /// `y[i] += alpha * x[i]` over `count` elements.
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int) {
        let a = SIMD8<Float>(repeating: alpha)
        var i = 0
        while i &+ 8 <= count {
            store(load(y + i) + a * load(x + i), y + i)
            i &+= 8
        }
        while i < count { y[i] += alpha * x[i]; i &+= 1 }
    }

    /// `out[i] = x[i] / sqrt(mean(x²) + epsilon) * weight[i]` (Llama's RMSNorm). `out` may be `x`.
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, epsilon: Float,
        into out: UnsafeMutablePointer<Float>, count: Int
    ) {
        let scale = 1 / (dot(x, x, count: count) / Float(count) + epsilon).squareRoot()
        let s = SIMD8<Float>(repeating: scale)
        var i = 0
        while i &+ 8 <= count {
            store(load(x + i) * s * load(weight + i), out + i)
            i &+= 8
        }
        while i < count { out[i] = x[i] * scale * weight[i]; i &+= 1 }
    }

    /// Softmax of `x[0 ..< count]` in place, stable for large inputs (subtracts the maximum).
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count: Int) {
        guard count > 0 else { return }
        var maximum = x[0]
        for i in 1 ..< count where x[i] > maximum { maximum = x[i] }
        var sum: Float = 0
        for i in 0 ..< count {
            let e = expf(x[i] - maximum)
            x[i] = e
            sum += e
        }
        let inverse = 1 / sum
        let s = SIMD8<Float>(repeating: inverse)
        var i = 0
        while i &+ 8 <= count {
            store(load(x + i) * s, x + i)
            i &+= 8
        }
        while i < count { x[i] *= inverse; i &+= 1 }
    }

    /// `gate[i] = silu(gate[i]) * up[i]` with `silu(g) = g / (1 + e^-g)`: the SwiGLU feed-forward's
    /// elementwise step, in place on `gate`.
    public static func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        for i in 0 ..< count {
            let g = gate[i]
            gate[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// `x[i] *= alpha` over `count` elements.
    public static func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
        let a = SIMD8<Float>(repeating: alpha)
        var i = 0
        while i &+ 8 <= count {
            store(load(x + i) * a, x + i)
            i &+= 8
        }
        while i < count { x[i] *= alpha; i &+= 1 }
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
