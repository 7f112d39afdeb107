import XCTest
@testable import FlywheelKernels
#if arch(x86_64)
import FlywheelKernelsAVX2
#endif

/// The row-group layout (`Q8Layout.rowGroups`): the copy keeps every row, and every kernel reading it gives the
/// same bits as the same kernel family on the row-major matrix.
final class RowGroupTests: XCTestCase {
    /// A random 12 x 7-block matrix, its row groups, and activation rows.
    struct Fixture {
        let w: Q8TestRows
        let xs: Q8TestRows
        let grouped: UnsafeMutableRawPointer

        init(rows: Int = 12, blocks: Int = 7, tokens: Int = 9, seed: UInt64) {
            var random = TestRandom(state: seed)
            w = Q8TestRows.random(rows: rows, blocks: blocks, quants: -128 ... 127, &random)
            xs = Q8TestRows.random(rows: tokens, blocks: blocks, &random)
            grouped = .allocate(byteCount: rows * blocks * Q8Block.byteCount, alignment: 64)
            let target = grouped
            _ = w.withMatrix { matrix, _ in matrix.regrouped(into: target) }
        }

        var groupedMatrix: Q8Matrix {
            Q8Matrix(base: grouped, rows: w.rows, columns: w.columns, layout: .rowGroups)
        }

        func release() { grouped.deallocate() }
    }

    func testRegroupingKeepsEveryRowAndLaysScalesBeforeQuants() {
        let f = Fixture(seed: 41)
        defer { f.release() }
        let grouped = f.groupedMatrix
        f.w.withMatrix { matrix, _ in
            var a = [Float](repeating: 0, count: matrix.columns), b = a
            for r in 0 ..< matrix.rows {
                matrix.dequantizeRow(r, into: &a)
                grouped.dequantizeRow(r, into: &b)
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "row \(r)")
            }
        }
        // Group 1, block 2: four scales, then row 4's quants, then row 5's ...
        let block = UnsafeRawPointer(f.grouped) + (1 * 7 + 2) * Q8Matrix.groupBlockBytes
        for i in 0 ..< 4 {
            let scale = Float(Float16(bitPattern: (block + 2 * i).loadUnaligned(as: UInt16.self)))
            XCTAssertEqual(scale, f.w.scale(row: 4 + i, block: 2))
            for k in [0, 17, 31] {
                XCTAssertEqual(Int((block + 8 + 32 * i + k).load(as: Int8.self)), f.w.quant(row: 4 + i, block: 2, k))
            }
        }
    }

    func testPortableKernelsOnRowGroupsAreBitIdenticalToRows() {
        let f = Fixture(seed: 42)
        defer { f.release() }
        f.w.withMatrix { matrix, _ in f.xs.bytes.withUnsafeBytes { px in
            let x = px.baseAddress!
            for rows in [0 ..< 12, 1 ..< 11, 5 ..< 6, 4 ..< 8] {
                var a = [Float](repeating: .nan, count: 12), b = a
                PortableKernels.matVec(matrix, x, into: &a, rows: rows)
                PortableKernels.matVec(f.groupedMatrix, x, into: &b, rows: rows)
                XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), "matVec rows \(rows)")
                var c = [Float](repeating: .nan, count: 9 * 12), d = c
                PortableKernels.matMul(matrix, x, batch: 9, into: &c, outStride: 12, rows: rows)
                PortableKernels.matMul(f.groupedMatrix, x, batch: 9, into: &d, outStride: 12, rows: rows)
                XCTAssertEqual(c.map(\.bitPattern), d.map(\.bitPattern), "matMul rows \(rows)")
            }
        } }
    }

    #if arch(x86_64)
    func testAVX2MatVecOnRowGroupsIsBitIdenticalToRowsOverAnyRowRange() throws {
        try XCTSkipUnless(KernelPath.cpuSupportsAVX2, "CPU has no AVX2")
        let f = Fixture(seed: 43)
        defer { f.release() }
        f.w.withMatrix { matrix, _ in f.xs.bytes.withUnsafeBytes { px in
            // Whole groups, ranges starting or ending inside a group, a single row, an empty range.
            for rows in [0 ..< 12, 4 ..< 12, 1 ..< 11, 3 ..< 9, 5 ..< 6, 8 ..< 12, 6 ..< 6, 2 ..< 4] {
                var plain = [Float](repeating: .nan, count: 12), grouped = plain
                AVX2Kernels.matVec(base: matrix.base, rowStride: matrix.rowStride, blocks: 7, x: px.baseAddress!,
                                   into: &plain, rows: rows)
                AVX2Kernels.matVecGrouped(base: f.grouped, blocks: 7, x: px.baseAddress!, into: &grouped, rows: rows)
                XCTAssertEqual(plain.map(\.bitPattern), grouped.map(\.bitPattern), "rows \(rows)")
                for r in 0 ..< 12 where !rows.contains(r) { XCTAssertTrue(grouped[r].isNaN, "row \(r) written") }
            }
        } }
    }

    func testAVX2MatMulOnRowGroupsIsBitIdenticalToRowsForEveryBatchTail() throws {
        try XCTSkipUnless(KernelPath.cpuSupportsAVX2, "CPU has no AVX2")
        try checkAVX2MatMulOnRowGroups(blocks: 7)
    }

    /// Rows longer than `AVX2Kernels.segmentThreshold` blocks, whose 16-bit tiles go in column segments.
    func testAVX2MatMulOnLongRowGroupsIsBitIdenticalToRowsForEveryBatchTail() throws {
        try XCTSkipUnless(KernelPath.cpuSupportsAVX2, "CPU has no AVX2")
        XCTAssertGreaterThan(37, AVX2Kernels.segmentThreshold)
        try checkAVX2MatMulOnRowGroups(blocks: 37)
    }

    func checkAVX2MatMulOnRowGroups(blocks: Int) throws {
        let f = Fixture(blocks: blocks, tokens: 41, seed: 44)
        defer { f.release() }
        f.w.withMatrix { matrix, _ in f.xs.bytes.withUnsafeBytes { px in
            // Every byte-tile tail, and the 16-bit tiles of 8 in spans of 16 (the last span up to 23 tokens).
            for batch in [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 23, 24, 27, 31, 32, 41] {
                for rows in [0 ..< 12, 1 ..< 12, 3 ..< 10, 2 ..< 6, 11 ..< 12, 5 ..< 7] {
                    let outStride = 13
                    var plain = [Float](repeating: .nan, count: batch * outStride), grouped = plain
                    AVX2Kernels.matMul(base: matrix.base, rowStride: matrix.rowStride, blocks: blocks, x: px.baseAddress!,
                                       xStride: f.xs.rowStride, batch: batch, into: &plain, outStride: outStride,
                                       rows: rows)
                    AVX2Kernels.matMulGrouped(base: f.grouped, blocks: blocks, x: px.baseAddress!, xStride: f.xs.rowStride,
                                              batch: batch, into: &grouped, outStride: outStride, rows: rows)
                    XCTAssertEqual(plain.map(\.bitPattern), grouped.map(\.bitPattern), "batch \(batch) rows \(rows)")
                    // And the same as one grouped matVec per token (what decode alone runs).
                    for b in 0 ..< batch {
                        var vec = [Float](repeating: .nan, count: 12)
                        AVX2Kernels.matVecGrouped(base: f.grouped, blocks: blocks, x: px.baseAddress! + b * f.xs.rowStride,
                                                  into: &vec, rows: rows)
                        for r in rows {
                            XCTAssertEqual(grouped[b * outStride + r].bitPattern, vec[r].bitPattern, "b \(b) r \(r)")
                        }
                    }
                }
            }
        } }
    }
    #endif

    func testKernelsDispatchRowGroupsToAKernelThatReadsThem() {
        let f = Fixture(seed: 45)
        defer { f.release() }
        f.w.withMatrix { matrix, _ in f.xs.bytes.withUnsafeBytes { px in
            var a = [Float](repeating: .nan, count: 4 * 12), b = a
            Kernels.matMul(matrix, px.baseAddress!, batch: 4, into: &a, outStride: 12, rows: 0 ..< 12)
            Kernels.matMul(f.groupedMatrix, px.baseAddress!, batch: 4, into: &b, outStride: 12, rows: 0 ..< 12)
            for i in 0 ..< 48 { XCTAssertEqual(a[i], b[i], accuracy: 1e-4 * max(1, abs(a[i])), "output \(i)") }
            var c = [Float](repeating: .nan, count: 12), d = c
            Kernels.matVec(matrix, px.baseAddress!, into: &c, rows: 0 ..< 12)
            Kernels.matVec(f.groupedMatrix, px.baseAddress!, into: &d, rows: 0 ..< 12)
            for i in 0 ..< 12 { XCTAssertEqual(c[i], d[i], accuracy: 1e-4 * max(1, abs(c[i])), "row \(i)") }
        } }
    }

    func testOnlyTheAVX2PathPrefersRowGroups() {
        XCTAssertEqual(Q8Matrix.preferredLayout, KernelPath.active == .avx2 ? .rowGroups : .rows)
    }
}
