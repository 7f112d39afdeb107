import XCTest
@testable import FlywheelKernels

final class PortableKernelsTests: XCTestCase {
    func testDotWithUnitScalesIsTheExactIntegerSumForAnyInt8() {
        var random = TestRandom(state: 11)
        // -128 on both sides: the portable path is exact for every byte, unlike the sign trick.
        let a = Q8TestRows.random(rows: 1, blocks: 8, quants: -128 ... 127, scale: nil, &random)
        let b = Q8TestRows.random(rows: 1, blocks: 8, quants: -128 ... 127, scale: nil, &random)
        let expected = (0 ..< 8).reduce(0) { $0 + a.blockSum(row: 0, b, row: 0, block: $1) }
        let got = a.bytes.withUnsafeBytes { pa in b.bytes.withUnsafeBytes { pb in
            PortableKernels.dot(pa.baseAddress!, pb.baseAddress!, blocks: 8)
        } }
        XCTAssertEqual(got, Float(expected))
    }

    func testBlockSumOfExtremeQuantsIsExact() {
        var a = Q8TestRows(rows: 1, blocks: 1), b = a
        a.set(row: 0, block: 0, scale: 1, quants: [Int8](repeating: -128, count: 32))
        b.set(row: 0, block: 0, scale: 1, quants: [Int8](repeating: -128, count: 32))
        let got = a.bytes.withUnsafeBytes { pa in b.bytes.withUnsafeBytes { pb in
            PortableKernels.dot(pa.baseAddress!, pb.baseAddress!, blocks: 1)
        } }
        XCTAssertEqual(got, Float(32 * 128 * 128))
    }

    func testDotMatchesDoubleReferenceWithRandomScales() {
        var random = TestRandom(state: 12)
        let a = Q8TestRows.random(rows: 5, blocks: 18, &random)
        let x = Q8TestRows.random(rows: 1, blocks: 18, &random)
        a.withMatrix { w, _ in x.bytes.withUnsafeBytes { px in
            for r in 0 ..< 5 {
                let reference = a.referenceDot(row: r, x, row: 0)
                let got = PortableKernels.dot(w.row(r), px.baseAddress!, blocks: 18)
                XCTAssertEqual(Double(got), reference.value, accuracy: 1e-6 * reference.magnitude, "row \(r)")
            }
        } }
    }

    func testQuantizeRoundsHalvesAwayFromZeroAndNeverGivesMinus128() {
        // max |x| = 127 makes d = 1 exactly, so x / d are the values themselves.
        var x = [Float](repeating: 0, count: 32)
        x[0] = 127; x[1] = -127; x[2] = 2.5; x[3] = -2.5; x[4] = 0.5; x[5] = -0.5; x[6] = 126.5; x[7] = 0.49
        var out = [UInt8](repeating: 0xAA, count: 34)
        PortableKernels.quantize(x, count: 32, into: &out)
        XCTAssertEqual(UInt16(out[0]) | UInt16(out[1]) << 8, Float16(1).bitPattern)
        XCTAssertEqual(out[2 ..< 10].map { Int8(bitPattern: $0) }, [127, -127, 3, -3, 1, -1, 127, 0])
    }

    func testHalfToFloatMatchesFloat16ForEveryBitPattern() {
        for bits in 0 ... UInt16.max {
            let expected = Float(Float16(bitPattern: bits))
            let got = PortableKernels.halfToFloat(bits)
            if expected.isNaN {
                XCTAssertTrue(got.isNaN, "bits \(bits)")
            } else {
                XCTAssertEqual(got.bitPattern, expected.bitPattern, "bits \(bits)")
            }
        }
    }
}
