import XCTest
@testable import FlywheelKernels
#if arch(x86_64)
import FlywheelKernelsAVX2
#endif

/// The AVX2 kernels against the portable ones and plain loops, in the same test run.
final class AVX2KernelsTests: XCTestCase {
    override func setUpWithError() throws {
        #if arch(x86_64)
        try XCTSkipUnless(KernelPath.cpuSupportsAVX2, "CPU has no AVX2")
        #else
        throw XCTSkip("not x86-64")
        #endif
    }

    #if arch(x86_64)
    /// AVX2 and portable dot products of `w`'s rows with `x`'s row 0.
    func dots(_ w: Q8TestRows, _ x: Q8TestRows) -> [(avx2: Float, portable: Float)] {
        w.withMatrix { matrix, _ in x.bytes.withUnsafeBytes { px in
            (0 ..< w.rows).map { r in
                (AVX2Kernels.dot(matrix.row(r), px.baseAddress!, blocks: w.blocks),
                 PortableKernels.dot(matrix.row(r), px.baseAddress!, blocks: w.blocks))
            }
        } }
    }

    func testDotWithUnitScalesIsBitIdenticalToIntegerSum() {
        var random = TestRandom(state: 31)
        // Weights may hold -128 (files could); activations come from quantize, so -127...127.
        let w = Q8TestRows.random(rows: 9, blocks: 8, quants: -128 ... 127, scale: nil, &random)
        let x = Q8TestRows.random(rows: 1, blocks: 8, quants: -127 ... 127, scale: nil, &random)
        for (r, pair) in dots(w, x).enumerated() {
            let exact = (0 ..< 8).reduce(0) { $0 + w.blockSum(row: r, x, row: 0, block: $1) }
            XCTAssertEqual(pair.avx2, Float(exact), "row \(r)")
            XCTAssertEqual(pair.portable, Float(exact), "row \(r)")
        }
    }

    func testDotOfExtremeBlocksIsExact() {
        var w = Q8TestRows(rows: 4, blocks: 2), x = Q8TestRows(rows: 1, blocks: 2)
        let all = { (q: Int8) in [Int8](repeating: q, count: 32) }
        w.set(row: 0, block: 0, scale: 1, quants: all(127)); w.set(row: 0, block: 1, scale: 1, quants: all(-128))
        w.set(row: 1, block: 0, scale: 1, quants: all(-128)); w.set(row: 1, block: 1, scale: 1, quants: all(-128))
        w.set(row: 2, block: 0, scale: 0, quants: all(99)); w.set(row: 2, block: 1, scale: 1, quants: all(0))
        w.set(row: 3, block: 0, scale: 1, quants: (0 ..< 32).map { $0 % 2 == 0 ? 127 : -128 })
        w.set(row: 3, block: 1, scale: 1, quants: all(1))
        x.set(row: 0, block: 0, scale: 1, quants: all(-127)); x.set(row: 0, block: 1, scale: 1, quants: all(127))
        let expected: [Float] = [
            32 * 127 * -127 + 32 * -128 * 127,
            32 * -128 * -127 + 32 * -128 * 127,
            0,
            16 * 127 * -127 + 16 * -128 * -127 + 32 * 127,
        ]
        let got = dots(w, x)
        XCTAssertEqual(got.map(\.avx2), expected)
        XCTAssertEqual(got.map(\.portable), expected)
    }

    func testDotWithRandomScalesAgreesWithPortableWithinFloatRounding() {
        var random = TestRandom(state: 32)
        let w = Q8TestRows.random(rows: 16, blocks: 18, quants: -128 ... 127, &random)
        let x = Q8TestRows.random(rows: 1, blocks: 18, &random)
        for (r, pair) in dots(w, x).enumerated() {
            let reference = w.referenceDot(row: r, x, row: 0)
            XCTAssertEqual(Double(pair.avx2), reference.value, accuracy: 1e-6 * reference.magnitude, "row \(r)")
            XCTAssertEqual(pair.avx2, pair.portable, accuracy: Float(1e-6 * reference.magnitude), "row \(r)")
        }
    }

    func testMatVecOverUnevenRowRangesMatchesDot() {
        var random = TestRandom(state: 33)
        let w = Q8TestRows.random(rows: 13, blocks: 5, quants: -128 ... 127, &random)
        let x = Q8TestRows.random(rows: 1, blocks: 5, &random)
        w.withMatrix { matrix, _ in x.bytes.withUnsafeBytes { px in
            for rows in [0 ..< 13, 3 ..< 11, 5 ..< 6, 0 ..< 4, 7 ..< 7, 1 ..< 13] {
                var out = [Float](repeating: .nan, count: 13)
                AVX2Kernels.matVec(base: matrix.base, rowStride: matrix.rowStride, blocks: 5, x: px.baseAddress!,
                                   into: &out, rows: rows)
                for r in 0 ..< 13 {
                    if rows.contains(r) {
                        let reference = w.referenceDot(row: r, x, row: 0)
                        XCTAssertEqual(Double(out[r]), reference.value, accuracy: 1e-6 * reference.magnitude,
                                       "row \(r) of \(rows)")
                    } else {
                        XCTAssertTrue(out[r].isNaN, "row \(r) outside \(rows) was written")
                    }
                }
            }
        } }
    }

    func testMatMulIsBitIdenticalToOneMatVecPerActivationRow() {
        checkMatMulAgainstMatVec(blocks: 6)
    }

    /// Rows longer than `AVX2Kernels.segmentThreshold` blocks, whose 16-bit tiles go in column segments.
    func testMatMulOfLongRowsIsBitIdenticalToOneMatVecPerActivationRow() {
        XCTAssertGreaterThan(37, AVX2Kernels.segmentThreshold)
        checkMatMulAgainstMatVec(blocks: 37)
    }

    func checkMatMulAgainstMatVec(blocks: Int) {
        var random = TestRandom(state: 34)
        let w = Q8TestRows.random(rows: 11, blocks: blocks, quants: -128 ... 127, &random)
        let xs = Q8TestRows.random(rows: 41, blocks: blocks, &random)
        w.withMatrix { matrix, _ in xs.bytes.withUnsafeBytes { px in
            // Batches of every tail (1...3 tokens after whole tiles of 4), and of the 16-bit tiles of 8 tokens in
            // spans of 16 (the last span takes up to 23).
            for batch in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 23, 24, 27, 31, 32, 41] {
                for rows in [0 ..< 11, 2 ..< 9, 4 ..< 8, 10 ..< 11] {
                    let outStride = 12
                    var mul = [Float](repeating: .nan, count: batch * outStride)
                    AVX2Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks, x: px.baseAddress!,
                                       xStride: xs.rowStride, batch: batch, into: &mul, outStride: outStride, rows: rows)
                    var vec = [Float](repeating: .nan, count: batch * outStride)
                    vec.withUnsafeMutableBufferPointer { vec in
                        for b in 0 ..< batch {
                            AVX2Kernels.matVec(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks,
                                               x: px.baseAddress! + b * xs.rowStride,
                                               into: vec.baseAddress! + b * outStride, rows: rows)
                        }
                    }
                    XCTAssertEqual(mul.map(\.bitPattern), vec.map(\.bitPattern), "batch \(batch) rows \(rows)")
                    for b in 0 ..< batch {
                        for r in rows {
                            let reference = w.referenceDot(row: r, xs, row: b)
                            XCTAssertEqual(Double(mul[b * outStride + r]), reference.value,
                                           accuracy: 1e-6 * reference.magnitude, "b \(b) r \(r)")
                        }
                    }
                }
            }
        } }
    }
    #endif
}
