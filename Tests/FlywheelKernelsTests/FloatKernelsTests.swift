import XCTest
@testable import FlywheelKernels

/// Each operation against a plain loop in Double, at lengths with and without a tail.
final class FloatKernelsTests: XCTestCase {
    static let lengths = [0, 1, 7, 8, 9, 16, 23, 64, 100]

    func vector(_ count: Int, _ random: inout TestRandom, range: ClosedRange<Float> = -2 ... 2) -> [Float] {
        (0 ..< count).map { _ in random.float(in: range) }
    }

    func testDotMatchesPlainLoop() {
        var random = TestRandom(state: 51)
        for n in Self.lengths {
            let a = vector(n, &random), b = vector(n, &random)
            let expected = zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let magnitude = zip(a, b).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
            XCTAssertEqual(Double(FloatKernels.dot(a, b, count: n)), expected, accuracy: 1e-6 * max(1, magnitude), "n \(n)")
        }
    }

    func testAxpyAndScaleMatchPlainLoops() {
        var random = TestRandom(state: 52)
        for n in Self.lengths {
            let x = vector(n, &random)
            var y = vector(n, &random)
            let expected = zip(x, y).map { 0.75 * $0 + $1 }
            FloatKernels.axpy(0.75, x, &y, count: n)
            XCTAssertEqual(y, expected, "n \(n)")
            FloatKernels.scale(&y, by: -2, count: n)
            XCTAssertEqual(y, expected.map { $0 * -2 }, "n \(n)")
        }
    }

    func testRMSNormMatchesPlainLoop() {
        var random = TestRandom(state: 53)
        for n in Self.lengths where n > 0 {
            let x = vector(n, &random), weight = vector(n, &random, range: 0.5 ... 1.5)
            let mean = x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(n)
            let scale = 1 / (mean + 1e-5).squareRoot()
            var out = [Float](repeating: 0, count: n)
            FloatKernels.rmsNorm(x, weight: weight, epsilon: 1e-5, into: &out, count: n)
            for i in 0 ..< n {
                XCTAssertEqual(Double(out[i]), Double(x[i]) * scale * Double(weight[i]), accuracy: 1e-5, "n \(n) i \(i)")
            }
        }
    }

    func testSoftmaxSumsToOneAndSurvivesLargeInputs() {
        var random = TestRandom(state: 54)
        for n in Self.lengths where n > 0 {
            var x = vector(n, &random, range: -30 ... 30)
            x[0] = 1000  // would overflow exp without subtracting the maximum
            let maximum = Double(x.max()!)
            let exps = x.map { exp(Double($0) - maximum) }
            let total = exps.reduce(0, +)
            FloatKernels.softmax(&x, count: n)
            for i in 0 ..< n { XCTAssertEqual(Double(x[i]), exps[i] / total, accuracy: 1e-6, "n \(n) i \(i)") }
        }
    }

    func testSiluMulMatchesPlainLoop() {
        var random = TestRandom(state: 55)
        for n in Self.lengths {
            var gate = vector(n, &random, range: -8 ... 8)
            let up = vector(n, &random)
            let expected = zip(gate, up).map { Double($0) / (1 + exp(-Double($0))) * Double($1) }
            FloatKernels.siluMul(&gate, up, count: n)
            for i in 0 ..< n { XCTAssertEqual(Double(gate[i]), expected[i], accuracy: 1e-5, "n \(n) i \(i)") }
        }
    }
}
