#if arch(x86_64)
import FlywheelEngineAVX2
#endif
@testable import FlywheelEngine
import FlywheelKernels
import Foundation
import XCTest

/// The vector operations of the forward pass against plain scalar (Double) arithmetic, and the AVX2
/// attention kernels against the portable ones.
final class TransformerMathTests: XCTestCase {
    private func randomFloats(_ count: Int, _ generator: inout SplitMix64, scale: Double = 1) -> [Float] {
        (0 ..< count).map { _ in Float((Double(generator.next() % 2_000_001) / 1_000_000 - 1) * scale) }
    }

    /// Keys (count, hd) rearranged into the cache's blocks of 8 positions, dimension-major, as f16 (the cache's
    /// storage). The lanes past `count` hold NaN: they must never reach a score.
    private func blocked(_ keys: [Float], count: Int, dimension hd: Int) -> [Float16] {
        var out = [Float16](repeating: .nan, count: (count + 7) / 8 * 8 * hd)
        for t in 0 ..< count {
            for d in 0 ..< hd { out[(t / 8) * 8 * hd + d * 8 + t % 8] = Float16(keys[t * hd + d]) }
        }
        return out
    }

    /// Values rounded to f16, as the cache stores them.
    private func halves(_ values: [Float]) -> [Float16] { values.map { Float16($0) } }

    func testVectorExpIsWithinAFewUlpOfLibm() {
        var worst: Double = 0
        for i in 0 ..< 20_000 {
            let x = Float(-87 + Double(i) * 175 / 20_000)
            let got = TransformerMath.exp(SIMD8<Float>(repeating: x))[3]
            worst = max(worst, abs(Double(got) / Foundation.exp(Double(x)) - 1))
        }
        XCTAssertLessThan(worst, 4e-7)
        XCTAssertEqual(TransformerMath.exp(SIMD8<Float>(repeating: -.infinity))[0], 0, accuracy: 1e-37)
    }

    func testSoftmaxSumsToOneAndMatchesDoubleArithmetic() {
        var generator = SplitMix64(seed: 1)
        let x = randomFloats(37, &generator, scale: 20)
        var y = x
        y.withUnsafeMutableBufferPointer { TransformerMath.softmax($0.baseAddress!, count: 37) }
        let top = Double(x.max()!)
        let denominator = x.map { Foundation.exp(Double($0) - top) }.reduce(0, +)
        for i in 0 ..< 37 {
            XCTAssertEqual(Double(y[i]), Foundation.exp(Double(x[i]) - top) / denominator, accuracy: 1e-6)
        }
    }

    func testScoresOverBlockedKeysEqualScaledDotProducts() {
        var generator = SplitMix64(seed: 2)
        let (hd, count) = (12, 21)
        let query = randomFloats(hd, &generator)
        let keys = randomFloats(count * hd, &generator)
        let blocks = blocked(keys, count: count, dimension: hd)
        var scores = [Float](repeating: 0, count: 24)
        TransformerMath.scores(query: query, keyBlocks: blocks, count: count, dimension: hd, scale: 0.5, into: &scores)
        for t in 0 ..< count {
            let expected = (0 ..< hd).map { Double(query[$0]) * Double(Float16(keys[t * hd + $0])) }.reduce(0, +) * 0.5
            XCTAssertEqual(Double(scores[t]), expected, accuracy: 1e-5, "position \(t)")
        }
    }

    func testWeightedSumSplitIntoAccumulatingCallsIsBitIdentical() {
        var generator = SplitMix64(seed: 3)
        let (dimension, count) = (40, 30)
        let rows = halves(randomFloats(count * dimension, &generator))
        let weights = randomFloats(count, &generator)
        var whole = [Float](repeating: 0, count: dimension)
        TransformerMath.weightedSum(rows, weights: weights, count: count, dimension: dimension, accumulating: false, into: &whole)
        var split = [Float](repeating: .nan, count: dimension)
        rows.withUnsafeBufferPointer { rows in
            weights.withUnsafeBufferPointer { weights in
                TransformerMath.weightedSum(
                    rows.baseAddress!, weights: weights.baseAddress!, count: 13, dimension: dimension,
                    accumulating: false, into: &split)
                TransformerMath.weightedSum(
                    rows.baseAddress! + 13 * dimension, weights: weights.baseAddress! + 13, count: count - 13,
                    dimension: dimension, accumulating: true, into: &split)
            }
        }
        XCTAssertEqual(split, whole)
        for c in 0 ..< dimension {
            let expected = (0 ..< count).map { Double(weights[$0]) * Double(rows[$0 * dimension + c]) }.reduce(0, +)
            XCTAssertEqual(Double(whole[c]), expected, accuracy: 1e-5)
        }
    }

    func testAVX2AttentionKernelsAgreeWithPortableOnes() throws {
        #if arch(x86_64)
        guard KernelPath.cpuSupportsAVX2 else { throw XCTSkip("this CPU has no AVX2 and FMA") }
        var generator = SplitMix64(seed: 4)
        // 64 dimensions and 77 positions: the 8-block, single-block, 64-column and 8-column paths.
        for (hd, count) in [(64, 77), (72, 9)] {
            let query = randomFloats(hd, &generator)
            let blocks = blocked(randomFloats(count * hd, &generator), count: count, dimension: hd)
            let padded = (count + 7) / 8 * 8
            var portable = [Float](repeating: 0, count: padded), fast = portable
            TransformerMath.scores(query: query, keyBlocks: blocks, count: count, dimension: hd, scale: 0.3, into: &portable)
            AttentionKernelsAVX2.scores(query: query, keyBlocks: blocks, count: count, dimension: hd, scale: 0.3, into: &fast)
            for t in 0 ..< count { XCTAssertEqual(fast[t], portable[t], accuracy: 1e-5) }

            let portableTotal = TransformerMath.exponentiate(&portable, count: count)
            let fastTotal = AttentionKernelsAVX2.exponentiate(&fast, count: count)
            XCTAssertEqual(fastTotal, portableTotal, accuracy: 1e-4 * portableTotal)
            for t in 0 ..< count { XCTAssertEqual(fast[t], portable[t], accuracy: 1e-5) }

            let values = halves(randomFloats(count * hd, &generator))
            var portableOut = [Float](repeating: 0, count: hd), fastOut = portableOut
            TransformerMath.weightedSum(values, weights: portable, count: count, dimension: hd, accumulating: false, into: &portableOut)
            AttentionKernelsAVX2.weightedSum(values, weights: portable, count: count, dimension: hd, accumulating: false, into: &fastOut)
            for c in 0 ..< hd { XCTAssertEqual(fastOut[c], portableOut[c], accuracy: 1e-4) }
            AttentionKernelsAVX2.weightedSum(values, weights: portable, count: count, dimension: hd, accumulating: true, into: &fastOut)
            for c in 0 ..< hd { XCTAssertEqual(fastOut[c], 2 * portableOut[c], accuracy: 2e-4) }
        }
        #else
        throw XCTSkip("AVX2 kernels exist only on x86-64")
        #endif
    }
}
