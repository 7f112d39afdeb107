import XCTest
@testable import FlywheelKernels

final class Q8KernelTests: XCTestCase {
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
}
