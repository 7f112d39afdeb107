import XCTest
@testable import FlywheelKernels
#if arch(x86_64)
import FlywheelKernelsAVX512
#endif

/// The AVX-512 VNNI kernels against the portable ones and plain loops, in the same test run.
final class AVX512KernelsTests: XCTestCase {
    override func setUpWithError() throws {
        #if arch(x86_64)
        try XCTSkipUnless(KernelPath.cpuSupportsAVX512VNNI, "CPU has no AVX-512 VNNI")
        #else
        throw XCTSkip("not x86-64")
        #endif
    }

    #if arch(x86_64)
    /// AVX-512 and portable dot products of `w`'s rows with `x`'s row 0.
    func dots(_ w: Q8TestRows, _ x: Q8TestRows) -> [(fast: Float, portable: Float)] {
        w.withMatrix { matrix, _ in x.bytes.withUnsafeBytes { px in
            (0 ..< w.rows).map { r in
                (AVX512Kernels.dot(matrix.row(r), px.baseAddress!, blocks: w.blocks),
                 PortableKernels.dot(matrix.row(r), px.baseAddress!, blocks: w.blocks))
            }
        } }
    }

    func testDotWithUnitScalesIsExactForOddAndEvenBlockCounts() {
        var random = TestRandom(state: 51)
        for blocks in [1, 2, 3, 8, 9] {
            let w = Q8TestRows.random(rows: 5, blocks: blocks, quants: -128 ... 127, scale: nil, &random)
            let x = Q8TestRows.random(rows: 1, blocks: blocks, quants: -127 ... 127, scale: nil, &random)
            for (r, pair) in dots(w, x).enumerated() {
                let exact = (0 ..< blocks).reduce(0) { $0 + w.blockSum(row: r, x, row: 0, block: $1) }
                XCTAssertEqual(pair.fast, Float(exact), "blocks \(blocks) row \(r)")
            }
        }
    }

    func testDotOfExtremeBlocksIsExact() {
        var w = Q8TestRows(rows: 4, blocks: 3), x = Q8TestRows(rows: 1, blocks: 3)
        let all = { (q: Int8) in [Int8](repeating: q, count: 32) }
        w.set(row: 0, block: 0, scale: 1, quants: all(127)); w.set(row: 0, block: 1, scale: 1, quants: all(-128))
        w.set(row: 1, block: 0, scale: 1, quants: all(-128)); w.set(row: 1, block: 1, scale: 1, quants: all(-128))
        w.set(row: 2, block: 0, scale: 0, quants: all(99)); w.set(row: 2, block: 1, scale: 1, quants: all(0))
        w.set(row: 3, block: 0, scale: 1, quants: (0 ..< 32).map { $0 % 2 == 0 ? 127 : -128 })
        w.set(row: 3, block: 1, scale: 1, quants: all(1))
        // The odd trailing block: -128 weights against -127 activations, and a zero activation scale.
        w.set(row: 0, block: 2, scale: 1, quants: all(-128)); w.set(row: 1, block: 2, scale: 1, quants: all(-128))
        w.set(row: 2, block: 2, scale: 1, quants: all(-128)); w.set(row: 3, block: 2, scale: 1, quants: all(-128))
        x.set(row: 0, block: 0, scale: 1, quants: all(-127)); x.set(row: 0, block: 1, scale: 1, quants: all(127))
        x.set(row: 0, block: 2, scale: 1, quants: all(-127))
        let tail: Float = 32 * -128 * -127
        let expected: [Float] = [
            32 * 127 * -127 + 32 * -128 * 127 + tail,
            32 * -128 * -127 + 32 * -128 * 127 + tail,
            0 + tail,
            16 * 127 * -127 + 16 * -128 * -127 + 32 * 127 + tail,
        ]
        let got = dots(w, x)
        XCTAssertEqual(got.map(\.fast), expected)
        XCTAssertEqual(got.map(\.portable), expected)
        x.set(row: 0, block: 2, scale: 0, quants: all(-127))
        XCTAssertEqual(dots(w, x).map(\.fast), expected.map { $0 - tail })
    }

    func testDotWithRandomScalesAgreesWithPortableWithinFloatRounding() {
        var random = TestRandom(state: 52)
        for blocks in [1, 7, 18] {
            let w = Q8TestRows.random(rows: 16, blocks: blocks, quants: -128 ... 127, &random)
            let x = Q8TestRows.random(rows: 1, blocks: blocks, &random)
            for (r, pair) in dots(w, x).enumerated() {
                let reference = w.referenceDot(row: r, x, row: 0)
                let bound = w.absoluteDot(row: r, x, row: 0)
                XCTAssertEqual(Double(pair.fast), reference.value, accuracy: 1e-6 * bound, "row \(r)")
                XCTAssertEqual(pair.fast, pair.portable, accuracy: Float(1e-6 * bound), "row \(r)")
            }
        }
    }

    func testMatVecOverUnevenRowRangesIsBitIdenticalToDot() {
        var random = TestRandom(state: 53)
        for blocks in [1, 5, 6] {
            let w = Q8TestRows.random(rows: 13, blocks: blocks, quants: -128 ... 127, &random)
            let x = Q8TestRows.random(rows: 1, blocks: blocks, &random)
            let dot = dots(w, x).map(\.fast)
            w.withMatrix { matrix, _ in x.bytes.withUnsafeBytes { px in
                for rows in [0 ..< 13, 3 ..< 11, 5 ..< 6, 0 ..< 4, 7 ..< 7, 1 ..< 13] {
                    var out = [Float](repeating: .nan, count: 13)
                    AVX512Kernels.matVec(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks,
                                         x: px.baseAddress!, into: &out, rows: rows)
                    for r in 0 ..< 13 {
                        if rows.contains(r) {
                            XCTAssertEqual(out[r].bitPattern, dot[r].bitPattern, "blocks \(blocks) row \(r) of \(rows)")
                            let reference = w.referenceDot(row: r, x, row: 0)
                            XCTAssertEqual(Double(out[r]), reference.value, accuracy: 1e-6 * w.absoluteDot(row: r, x, row: 0))
                        } else {
                            XCTAssertTrue(out[r].isNaN, "row \(r) outside \(rows) was written")
                        }
                    }
                }
            } }
        }
    }

    func testMatMulIsBitIdenticalToOneMatVecPerActivationRowAndAgreesWithPortable() {
        var random = TestRandom(state: 54)
        for blocks in [1, 2, 5, 6] {
            let w = Q8TestRows.random(rows: 11, blocks: blocks, quants: -128 ... 127, &random)
            let xs = Q8TestRows.random(rows: 27, blocks: blocks, &random)
            w.withMatrix { matrix, _ in xs.bytes.withUnsafeBytes { px in
                // Every tile (3 x 8, 3 x 4, the 1...3-token tails) and panel split (16 -> 8 + 8, 27 -> 8 + 8 + 11).
                for batch in [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 15, 16, 20, 27] {
                    for rows in [0 ..< 11, 2 ..< 9, 4 ..< 8, 10 ..< 11, 3 ..< 3] {
                        let outStride = 12
                        var mul = [Float](repeating: .nan, count: batch * outStride)
                        AVX512Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks,
                                             x: px.baseAddress!, xStride: xs.rowStride, batch: batch, into: &mul,
                                             outStride: outStride, rows: rows)
                        var vec = [Float](repeating: .nan, count: batch * outStride)
                        var portable = vec
                        vec.withUnsafeMutableBufferPointer { vec in
                            for b in 0 ..< batch {
                                AVX512Kernels.matVec(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks,
                                                     x: px.baseAddress! + b * xs.rowStride,
                                                     into: vec.baseAddress! + b * outStride, rows: rows)
                            }
                        }
                        PortableKernels.matMul(matrix, px.baseAddress!, batch: batch, into: &portable,
                                               outStride: outStride, rows: rows)
                        let label = "blocks \(blocks) batch \(batch) rows \(rows)"
                        XCTAssertEqual(mul.map(\.bitPattern), vec.map(\.bitPattern), label)
                        for b in 0 ..< batch {
                            for r in 0 ..< outStride where !rows.contains(r) {
                                XCTAssertTrue(mul[b * outStride + r].isNaN, "\(label): b \(b) r \(r) was written")
                            }
                            for r in rows {
                                let bound = w.absoluteDot(row: r, xs, row: b)
                                XCTAssertEqual(mul[b * outStride + r], portable[b * outStride + r],
                                               accuracy: Float(1e-6 * bound), "\(label): b \(b) r \(r)")
                            }
                        }
                    }
                }
            } }
        }
    }

    func testMatMulWithAllMinusOneTwentyEightWeightsAndFullRangeActivationsIsExact() {
        // Every tile shape sees -128 weights against ±127 activations, unit scales: exact integers.
        var w = Q8TestRows(rows: 9, blocks: 3)
        var xs = Q8TestRows(rows: 6, blocks: 3)
        for r in 0 ..< 9 {
            for j in 0 ..< 3 { w.set(row: r, block: j, scale: 1, quants: [Int8](repeating: -128, count: 32)) }
        }
        for b in 0 ..< 6 {
            for j in 0 ..< 3 {
                xs.set(row: b, block: j, scale: 1, quants: (0 ..< 32).map { ($0 + b + j) % 3 == 0 ? -127 : 127 })
            }
        }
        w.withMatrix { matrix, _ in xs.bytes.withUnsafeBytes { px in
            var out = [Float](repeating: .nan, count: 6 * 9)
            AVX512Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: 3, x: px.baseAddress!,
                                 xStride: xs.rowStride, batch: 6, into: &out, outStride: 9, rows: 0 ..< 9)
            for b in 0 ..< 6 {
                let exact = (0 ..< 3).reduce(0) { $0 + w.blockSum(row: 0, xs, row: b, block: $1) }
                for r in 0 ..< 9 { XCTAssertEqual(out[b * 9 + r], Float(exact), "b \(b) r \(r)") }
            }
        } }
    }
    #endif
}
