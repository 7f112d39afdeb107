import FlywheelEngine
import XCTest

/// Specific malformed files: each must be refused with the right error, never trap.
final class GGUFHostileTests: XCTestCase {
    private func assertError(
        _ bytes: [UInt8], _ expected: GGUFError, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try GGUFFile(bytes: bytes), file: file, line: line) { error in
            XCTAssertEqual(error as? GGUFError, expected, file: file, line: line)
            XCTAssertFalse("\(error)".isEmpty, file: file, line: line)
        }
    }

    private func assertError(
        _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line, _ check: (GGUFError) -> Bool
    ) {
        XCTAssertThrowsError(try GGUFFile(bytes: bytes), file: file, line: line) { error in
            guard let error = error as? GGUFError else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertTrue(check(error), "\(error)", file: file, line: line)
        }
    }

    func testBuilderBaselineOpens() throws {
        let file = try GGUFFile(bytes: GGUFBuilder.oneTensor())
        XCTAssertEqual(file.tensors.first?.shape, [4])
        XCTAssertEqual(try file.withTensorBytes("t") { $0.loadUnaligned(fromByteOffset: 12, as: Float.self) }, 3)
    }

    func testWrongMagic() {
        var bytes = GGUFBuilder.oneTensor()
        bytes[0] = UInt8(ascii: "X")
        assertError(bytes, .badMagic(0x4655_4758))
    }

    func testVersions() throws {
        var bytes = GGUFBuilder.oneTensor()
        for version: UInt8 in [0, 1, 4, 0xFF] {
            bytes[4] = version
            assertError(bytes, .unsupportedVersion(UInt32(version)))
        }
        bytes[4] = 2
        XCTAssertEqual(try GGUFFile(bytes: bytes).version, 2, "v2 has the v3 layout")
        bytes[4] = 0
        bytes[7] = 3  // a big-endian v3 file reads as 0x03000000
        assertError(bytes, .unsupportedVersion(0x0300_0000))
    }

    func testAbsurdCounts() {
        var b = GGUFBuilder()
        b.header(tensors: 1 << 40, kvs: 0)
        assertError(b.bytes, .absurdCount(what: "tensor count", count: 1 << 40, at: 8))
        b = GGUFBuilder()
        b.header(tensors: 0, kvs: .max)
        assertError(b.bytes, .absurdCount(what: "metadata count", count: .max, at: 16))
    }

    func testHugeStringLength() {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.u64(.max)  // key length
        b.zeros(16)
        assertError(b.bytes, .absurdCount(what: "string length", count: .max, at: 24))

        b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("k")
        b.u32(8)
        b.u64(1 << 62)  // value length
        b.zeros(8)
        assertError(b.bytes, .absurdCount(what: "string length", count: 1 << 62, at: 37))
    }

    func testHugeArrayCount() {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("tokenizer.ggml.tokens")
        b.u32(9)
        b.u32(8)  // of strings
        b.u64(1 << 61)
        b.zeros(64)
        assertError(b.bytes) { if case .absurdCount("array count", 1 << 61, _) = $0 { return true }; return false }

        // 100 elements of u64 claimed, only 99 * 8 bytes present.
        b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("a")
        b.u32(9)
        b.u32(10)
        b.u64(100)
        b.zeros(99 * 8)
        assertError(b.bytes) { if case .absurdCount("array count", 100, _) = $0 { return true }; return false }
    }

    func testInvalidValueTypes() {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("k")
        b.u32(13)
        b.zeros(8)
        assertError(b.bytes, .invalidValueType(key: "k", type: 13))

        b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.string("arr")
        b.u32(9)
        b.u32(0xFFFF_FFFF)
        b.u64(1)
        b.zeros(8)
        assertError(b.bytes, .invalidValueType(key: "arr", type: 0xFFFF_FFFF))
    }

    func testNestedArraysAreBounded() throws {
        func nested(depth: Int) -> [UInt8] {
            var b = GGUFBuilder()
            b.header(tensors: 0, kvs: 1)
            b.string("deep")
            b.u32(9)
            for _ in 1 ..< depth {
                b.u32(9)
                b.u64(1)
            }
            b.u32(0)
            b.u64(1)
            b.u8(7)
            return b.bytes
        }
        let ok = try GGUFFile(bytes: nested(depth: GGUFFile.maximumArrayDepth))
        XCTAssertNotNil(ok.array("deep"))
        assertError(nested(depth: GGUFFile.maximumArrayDepth + 1), .arrayNestingTooDeep(key: "deep"))
        // Claimed depth far beyond the limit, as if to blow the stack: refused at the limit.
        assertError(nested(depth: 10_000), .arrayNestingTooDeep(key: "deep"))
    }

    func testInvalidUTF8Key() {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.u64(2)
        b.u8(0xC3)
        b.u8(0x28)
        b.u32(0)
        b.u8(1)
        assertError(b.bytes, .invalidUTF8(at: 24))
    }

    func testDuplicateKey() {
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 2)
        b.kvU32("x", 1)
        b.kvU32("x", 2)
        assertError(b.bytes, .duplicateKey("x"))
    }

    func testBadAlignment() throws {
        for (value, ok) in [(0 as UInt32, false), (48, false), (3, false), (1, true), (64, true), (1 << 31, true)] {
            var b = GGUFBuilder()
            b.header(tensors: 0, kvs: 1)
            b.kvU32("general.alignment", value)
            if ok {
                XCTAssertEqual(try GGUFFile(bytes: b.bytes).alignment, Int(value))
            } else {
                assertError(b.bytes) { if case .badAlignment = $0 { return true }; return false }
            }
        }
        var b = GGUFBuilder()
        b.header(tensors: 0, kvs: 1)
        b.kvString("general.alignment", "32")
        assertError(b.bytes) { if case .badAlignment = $0 { return true }; return false }

        // A huge alignment with a tensor: the padded data section lies past the end.
        b = GGUFBuilder()
        b.header(tensors: 1, kvs: 1)
        b.kvU32("general.alignment", 1 << 31)
        b.tensor("t", dims: [1])
        b.zeros(64)
        assertError(b.bytes) { if case .truncated = $0 { return true }; return false }
    }

    func testTooManyDimensions() {
        for dims: [UInt64] in [Array(repeating: 1, count: 9), []] {
            var b = GGUFBuilder()
            b.header(tensors: 1, kvs: 0)
            b.tensor("t", dims: dims)
            b.pad(to: 32)
            b.zeros(64)
            assertError(b.bytes, .invalidDimensionCount(name: "t", count: UInt32(dims.count)))
        }
        var b = GGUFBuilder()
        b.header(tensors: 1, kvs: 0)
        b.string("t")
        b.u32(.max)
        b.zeros(64)
        assertError(b.bytes, .invalidDimensionCount(name: "t", count: .max))
    }

    func testBadShapes() {
        let cases: [(dims: [UInt64], type: UInt32)] = [
            ([1 << 32, 1 << 32, 1 << 32], 0),  // element count overflows
            ([1 << 31, 1 << 31], 0),  // element count fits, byte count (x4) overflows
            ([.max], 0),  // does not fit in Int
            ([4, 0], 0),  // zero dimension
            ([32, (1 << 58) - 1], 8),  // Q8_0: (2^63 - 32) elements fit, 34 bytes per 32 overflow
        ]
        for (dims, type) in cases {
            var b = GGUFBuilder()
            b.header(tensors: 1, kvs: 0)
            b.tensor("t", dims: dims, type: type)
            b.pad(to: 32)
            b.zeros(64)
            assertError(b.bytes, .invalidShape(name: "t", shape: dims))
        }
    }

    func testQ8RowMustBeBlockMultiple() throws {
        var b = GGUFBuilder()
        b.header(tensors: 1, kvs: 0)
        b.tensor("q", dims: [48, 2], type: 8)
        b.pad(to: 32)
        b.zeros(34 * 4)
        assertError(b.bytes, .rowNotBlockAligned(name: "q", rowLength: 48, blockSize: 32))

        b = GGUFBuilder()
        b.header(tensors: 1, kvs: 0)
        b.tensor("q", dims: [64, 2], type: 8)
        b.pad(to: 32)
        b.zeros(34 * 4)
        XCTAssertEqual(try GGUFFile(bytes: b.bytes).tensors.first?.byteCount, 136)
        b.bytes.removeLast()
        assertError(b.bytes, .tensorOutOfBounds(name: "q"))
    }

    func testTensorOffsets() {
        func file(offset: UInt64, dataBytes: Int = 64) -> [UInt8] {
            var b = GGUFBuilder()
            b.header(tensors: 1, kvs: 0)
            b.tensor("t", dims: [4], offset: offset)
            b.pad(to: 32)
            b.zeros(dataBytes)
            return b.bytes
        }
        XCTAssertNoThrow(try GGUFFile(bytes: file(offset: 32)))
        assertError(file(offset: 64), .tensorOutOfBounds(name: "t"))  // 64 + 16 > 64
        assertError(file(offset: 1 << 40), .tensorOutOfBounds(name: "t"))
        assertError(file(offset: UInt64.max & ~31), .tensorOutOfBounds(name: "t"))  // > Int.max
        assertError(file(offset: 4), .misalignedTensor(name: "t", offset: 4))
        assertError(file(offset: 0, dataBytes: 15), .tensorOutOfBounds(name: "t"))
        assertError(file(offset: 0, dataBytes: 0)) { if case .tensorOutOfBounds = $0 { return true }; return false }
    }

    func testDuplicateTensor() {
        var b = GGUFBuilder()
        b.header(tensors: 2, kvs: 0)
        b.tensor("t", dims: [4])
        b.tensor("t", dims: [4], offset: 32)
        b.pad(to: 32)
        b.zeros(64)
        assertError(b.bytes, .duplicateTensor("t"))
    }

    func testUnknownTensorTypeIsListedWithoutSize() throws {
        var b = GGUFBuilder()
        b.header(tensors: 1, kvs: 0)
        b.tensor("odd", dims: [7, 3], type: 0xDEAD)
        b.pad(to: 32)
        let file = try GGUFFile(bytes: b.bytes)
        XCTAssertNil(file.tensors.first?.byteCount)
        XCTAssertThrowsError(try file.withTensorBytes("odd") { _ in }) { error in
            XCTAssertEqual(error as? GGUFError, .unsupportedTensorType(name: "odd", typeID: 0xDEAD))
        }
    }
}
