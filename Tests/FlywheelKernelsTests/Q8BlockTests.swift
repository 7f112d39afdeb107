import XCTest
@testable import FlywheelKernels
#if arch(x86_64)
import FlywheelKernelsAVX2
#endif

final class Q8BlockTests: XCTestCase {
    /// ggml's reference quantizer written as plainly as possible.
    static func referenceQuantize(_ x: [Float]) -> [UInt8] {
        var out: [UInt8] = []
        for start in stride(from: 0, to: x.count, by: 32) {
            let block = x[start ..< start + 32]
            let amax = block.map { abs($0) }.max()!
            let d = amax / 127
            let inverse: Float = d == 0 ? 0 : 1 / d
            let bits = Float16(d).bitPattern
            out += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            out += block.map { UInt8(bitPattern: Int8(($0 * inverse).rounded(.toNearestOrAwayFromZero))) }
        }
        return out
    }

    /// Random floats, plus blocks that are all zero, hold exact ties, or have one huge outlier.
    static func awkwardFloats(_ random: inout TestRandom) -> [Float] {
        var x: [Float] = (0 ..< 32 * 40).map { _ in random.float(in: -3 ... 3) }
        for i in 0 ..< 32 { x[32 * 1 + i] = 0 }
        for i in 0 ..< 32 { x[32 * 2 + i] = Float(i * 8) - 127.5 }            // d = 127.5/127: no ties
        for i in 0 ..< 32 { x[32 * 3 + i] = i == 0 ? 127 : Float(i) - 15.5 }  // d = 1: halves everywhere
        for i in 0 ..< 32 { x[32 * 4 + i] = i == 7 ? -1e6 : random.float(in: -1 ... 1) }
        for i in 0 ..< 32 { x[32 * 5 + i] = i == 3 ? 1e-30 : 0 }              // subnormal-scale block
        for i in 0 ..< 32 { x[32 * 6 + i] = -Float(i % 3) * 42.25 }           // negative max
        return x
    }

    func testPortableQuantizeMatchesReference() {
        var random = TestRandom(state: 21)
        let x = Self.awkwardFloats(&random)
        var out = [UInt8](repeating: 0, count: Q8Block.rowByteCount(x.count))
        PortableKernels.quantize(x, count: x.count, into: &out)
        XCTAssertEqual(out, Self.referenceQuantize(x))
    }

    func testAVX2QuantizeIsBitIdenticalToReference() throws {
        #if arch(x86_64)
        try XCTSkipUnless(KernelPath.cpuSupportsAVX2, "CPU has no AVX2")
        var random = TestRandom(state: 22)
        let x = Self.awkwardFloats(&random)
        var out = [UInt8](repeating: 0, count: Q8Block.rowByteCount(x.count))
        AVX2Kernels.quantize(x, count: x.count, into: &out)
        XCTAssertEqual(out, Self.referenceQuantize(x))
        #else
        throw XCTSkip("not x86-64")
        #endif
    }

    func testQuantizeOfZeroBlockIsZeroScaleAndZeroQuants() {
        let x = [Float](repeating: 0, count: 64)
        var out = [UInt8](repeating: 0xAA, count: 68)
        Q8Block.quantize(x, count: 64, into: &out)
        XCTAssertEqual(out, [UInt8](repeating: 0, count: 68))
    }

    func testQuantizeThenDequantizeIsWithinHalfAStep() {
        var random = TestRandom(state: 23)
        let x: [Float] = (0 ..< 256).map { _ in random.float(in: -10 ... 10) }
        var q = [UInt8](repeating: 0, count: Q8Block.rowByteCount(256))
        Q8Block.quantize(x, count: 256, into: &q)
        var back = [Float](repeating: 0, count: 256)
        Q8Block.dequantize(q, count: 256, into: &back)
        for start in stride(from: 0, to: 256, by: 32) {
            let step = x[start ..< start + 32].map { abs($0) }.max()! / 127
            for i in start ..< start + 32 {
                // Half a step of rounding plus the f16 scale's relative error (2^-11) times 127 steps.
                XCTAssertEqual(back[i], x[i], accuracy: step * (0.5 + 127.0 / 2048), "element \(i)")
            }
        }
    }
}
