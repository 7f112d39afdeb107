import XCTest
@testable import FlywheelKernels

/// The dispatching entry points, on whichever path this machine selects.
final class KernelsTests: XCTestCase {
    func testQuantizedDotMatchesFloatDot() {
        let n = 128
        let a = (0 ..< n).map { Float(sin(Double($0) * 0.37)) }
        let b = (0 ..< n).map { Float(cos(Double($0) * 0.11)) }
        var qa = [UInt8](repeating: 0, count: Q8Block.rowByteCount(n))
        var qb = qa
        a.withUnsafeBufferPointer { Q8Block.quantize($0.baseAddress!, count: n, into: &qa) }
        b.withUnsafeBufferPointer { Q8Block.quantize($0.baseAddress!, count: n, into: &qb) }
        let exact = zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 }
        let got = Kernels.dot(qa, qb, blocks: n / 32)
        XCTAssertEqual(got, exact, accuracy: 0.02 * max(1, abs(exact)))
    }

    func testActivePathIsTheFastestTheCPUSupportsUnlessTheEnvironmentCapsIt() {
        let cap = getenv(KernelPath.environmentVariable).map { String(cString: $0).lowercased() }
        #if arch(x86_64)
        let expected: KernelPath =
            !KernelPath.cpuSupportsAVX2 || cap == "portable" ? .portable
            : !KernelPath.cpuSupportsAVX512VNNI || cap == "avx2" ? .avx2 : .avx512vnni
        XCTAssertEqual(Kernels.activePath, expected)
        #else
        XCTAssertEqual(Kernels.activePath, .portable)
        #endif
    }

    func testMatVecAndMatMulAgreeWithPortableReference() {
        var random = TestRandom(state: 41)
        let w = Q8TestRows.random(rows: 10, blocks: 4, quants: -128 ... 127, &random)
        let xs = Q8TestRows.random(rows: 5, blocks: 4, &random)
        w.withMatrix { matrix, _ in xs.bytes.withUnsafeBytes { px in
            var vec = [Float](repeating: 0, count: 10)
            var mul = [Float](repeating: 0, count: 50)
            var portable = mul
            Kernels.matVec(matrix, px.baseAddress!, into: &vec, rows: 0 ..< 10)
            Kernels.matMul(matrix, px.baseAddress!, batch: 5, into: &mul, outStride: 10, rows: 0 ..< 10)
            PortableKernels.matMul(matrix, px.baseAddress!, batch: 5, into: &portable, outStride: 10, rows: 0 ..< 10)
            for i in 0 ..< 50 {
                let reference = w.referenceDot(row: i % 10, xs, row: i / 10)
                XCTAssertEqual(mul[i], portable[i], accuracy: Float(1e-6 * reference.magnitude), "element \(i)")
                XCTAssertEqual(Double(portable[i]), reference.value, accuracy: 1e-6 * reference.magnitude)
            }
            XCTAssertEqual(Array(mul[0 ..< 10]), vec)
        } }
    }
}
