import FlywheelEngine
import XCTest

/// Reading the well-formed fixtures and checking everything against expected.json.
final class GGUFFileTests: XCTestCase {
    func testHeaderAndLayoutMatchExpected() throws {
        let expected = try GGUFFixture.expected("tiny")
        let file = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(file.alignment, expected["alignment"] as? Int)
        XCTAssertEqual(file.dataOffset, expected["data_offset"] as? Int)
        XCTAssertEqual(file.fileSize, expected["file_size"] as? Int)
    }

    func testEveryMetadataValueInOrder() throws {
        let expected = try XCTUnwrap(try GGUFFixture.expected("tiny")["metadata"] as? [[String: Any]])
        let file = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        XCTAssertEqual(file.metadataEntries.map(\.key), expected.map { $0["key"] as? String ?? "" })
        XCTAssertEqual(file.metadata.count, expected.count)
        for entry in expected {
            let key = try XCTUnwrap(entry["key"] as? String)
            let value = try XCTUnwrap(file.metadata[key], key)
            XCTAssertEqual(Self.kind(value), entry["type"] as? String, key)
            XCTAssertTrue(Self.matches(value, entry["value"] as Any), "\(key): \(value) vs \(entry["value"] ?? "nil")")
        }
    }

    func testTypedGetters() throws {
        let file = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        XCTAssertEqual(file.string("general.architecture"), "llama")
        XCTAssertEqual(file.string("test.string"), "h\u{e9}llo \u{2713}")
        XCTAssertEqual(file.string("test.empty_string"), "")
        XCTAssertEqual(file.int("test.u8"), 200)
        XCTAssertEqual(file.int("test.i8"), -100)
        XCTAssertEqual(file.int("test.u32"), 4_000_000_000)
        XCTAssertEqual(file.int("test.i64"), -(1 << 62))
        XCTAssertNil(file.int("test.u64"), "2^63+5 does not fit in Int")
        XCTAssertEqual(file.metadata["test.u64"], .uint64((1 << 63) + 5))
        XCTAssertEqual(file.int("llama.context_length"), 128)
        XCTAssertEqual(file.float("test.f32"), 1.5)
        XCTAssertEqual(file.float("test.f64"), 3.141592653589793)
        XCTAssertEqual(file.float("llama.rope.freq_base"), 10000)
        XCTAssertEqual(file.bool("test.bool"), true)
        XCTAssertNil(file.string("test.u8"), "wrong type gives nil")
        XCTAssertNil(file.int("test.string"))
        XCTAssertNil(file.float("missing.key"))
        XCTAssertEqual(file.stringArray("tokenizer.ggml.tokens"), ["<unk>", "<s>", "</s>", "hello", " world", "\u{2581}tok"])
        XCTAssertEqual(file.array("tokenizer.ggml.token_type")?.compactMap(\.intValue), [2, 3, 3, 1, 1, 1])
        XCTAssertEqual(file.array("tokenizer.ggml.scores")?.compactMap(\.doubleValue), [0, -1, -1.5, -2.25, -3, -4.5])
        XCTAssertEqual(
            file.metadata["test.array.nested"],
            .array(elementType: .array, elements: [
                .array(elementType: .int32, elements: [.int32(1), .int32(2)]),
                .array(elementType: .int32, elements: [.int32(3)]),
            ]))
    }

    func testTensorTableAndValues() throws {
        let expected = try XCTUnwrap(try GGUFFixture.expected("tiny")["tensors"] as? [[String: Any]])
        let file = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        XCTAssertEqual(file.tensors.map(\.name), expected.map { $0["name"] as? String ?? "" })
        for entry in expected {
            let name = try XCTUnwrap(entry["name"] as? String)
            let info = try XCTUnwrap(file.tensor(named: name))
            XCTAssertEqual(info.shape, entry["shape"] as? [Int], name)
            XCTAssertEqual(info.type.rawValue, (entry["type"] as? Int).map(UInt32.init), name)
            XCTAssertEqual(info.byteCount, entry["byte_count"] as? Int, name)
            XCTAssertEqual(info.offset, entry["offset"] as? Int, name)
            XCTAssertEqual(info.elementCount, info.shape.reduce(1, *), name)
            try file.withTensorBytes(name) { XCTAssertEqual($0.count, info.byteCount) }
        }

        let f32 = try file.withTensorBytes("token_embd.weight") { raw in
            (0 ..< raw.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        XCTAssertEqual(f32.map(Double.init), expected[0]["values"] as? [Double])

        let f16 = try file.withTensorBytes("blk.0.attn_norm.weight") { raw in
            (0 ..< raw.count / 2).map { GGUFFixture.half(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) }
        }
        XCTAssertEqual(f16.map(Double.init), expected[1]["values"] as? [Double])

        let blocks = try XCTUnwrap(expected[2]["blocks"] as? [[String: Any]])
        try file.withTensorBytes("blk.0.ffn_up.weight") { raw in
            XCTAssertEqual(raw.count, blocks.count * 34)
            for (k, block) in blocks.enumerated() {
                let base = k * 34
                let scale = GGUFFixture.half(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: base, as: UInt16.self)))
                let ints = (0 ..< 4).map { Int(Int8(bitPattern: raw[base + 2 + $0])) }
                XCTAssertEqual(Double(scale), block["scale"] as? Double, "block \(k)")
                XCTAssertEqual(ints, block["first_ints"] as? [Int], "block \(k)")
                XCTAssertEqual(ints.map { Double(scale) * Double($0) }, block["first_values"] as? [Double], "block \(k)")
            }
        }
    }

    func testUnsupportedTypeIsListedButRefused() throws {
        let expected = try GGUFFixture.expected("unsupported")
        let file = try GGUFFile(path: GGUFFixture.url("unsupported.gguf").path)
        XCTAssertEqual(file.alignment, 64)
        XCTAssertEqual(file.dataOffset, expected["data_offset"] as? Int)
        XCTAssertEqual(file.int("general.alignment"), 64)
        XCTAssertEqual(file.tensors.map(\.name), ["a", "b"])
        let b = try XCTUnwrap(file.tensor(named: "b"))
        XCTAssertEqual(b.type.rawValue, 16)
        XCTAssertFalse(b.type.isSupported)
        XCTAssertNil(b.byteCount)
        let expectedB = try XCTUnwrap((expected["tensors"] as? [[String: Any]])?.last)
        XCTAssertEqual(b.shape, expectedB["shape"] as? [Int])
        XCTAssertEqual(b.shape, [256, 1])
        XCTAssertEqual(b.offset, 64)
        XCTAssertThrowsError(try file.withTensorBytes("b") { _ in }) { error in
            XCTAssertEqual(error as? GGUFError, .unsupportedTensorType(name: "b", typeID: 16))
            XCTAssertTrue("\(error)".contains("IQ2_XXS"), "\(error)")
        }
        let a = try file.withTensorBytes("a") { raw in (0 ..< 3).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
        XCTAssertEqual(a, [1, 2, 3])
        XCTAssertThrowsError(try file.withTensorBytes("nope") { _ in }) { error in
            XCTAssertEqual(error as? GGUFError, .noSuchTensor("nope"))
        }
    }

    func testInMemoryMatchesMapped() throws {
        let bytes = try GGUFFixture.bytes("tiny.gguf")
        let mapped = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        let copied = try GGUFFile(bytes: bytes)
        XCTAssertEqual(mapped.metadataEntries, copied.metadataEntries)
        XCTAssertEqual(mapped.tensors, copied.tensors)
    }

    func testMissingFileIsAnIOError() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/flywheel/model.gguf")) { error in
            guard case .io(_, "open", _)? = error as? GGUFError else { return XCTFail("\(error)") }
        }
    }

    func testEmptyFileIsTruncated() throws {
        let path = try GGUFFixture.temporaryFile([], name: "empty.gguf")
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try GGUFFile(path: path)) { error in
            XCTAssertEqual(error as? GGUFError, .truncated(at: 0, needed: 4))
        }
    }

    func testConcurrentReadersShareOneFile() throws {
        let file = try GGUFFile(path: GGUFFixture.url("tiny.gguf").path)
        let names = file.tensors.map(\.name)
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let name = names[i % names.count]
            let count = try? file.withTensorBytes(name) { $0.count }
            XCTAssertEqual(count, file.tensor(named: name)?.byteCount)
        }
    }

    func testErrorDescriptionsNameTheProblem() {
        XCTAssertEqual("\(GGUFError.truncated(at: 24, needed: 8))", "GGUF: file truncated: needed 8 byte(s) at offset 24")
        XCTAssertTrue("\(GGUFError.invalidValueType(key: "k", type: 99))".contains("\"k\""))
        XCTAssertTrue("\(GGUFError.tensorOutOfBounds(name: "w"))".contains("\"w\""))
        XCTAssertTrue("\(GGUFError.unsupportedVersion(4))".contains("4"))
        XCTAssertTrue("\(GGUFError.badMagic(0x4655_4758))".contains("GGUF"))
    }

    // MARK: Helpers

    static func kind(_ value: GGUFValue) -> String {
        if case let .array(elementType, _) = value { return "array:\(elementType)" }
        return "\(value.type)"
    }

    static func matches(_ value: GGUFValue, _ expected: Any) -> Bool {
        switch value {
        case let .uint8(v): return expected as? String == String(v)
        case let .int8(v): return expected as? String == String(v)
        case let .uint16(v): return expected as? String == String(v)
        case let .int16(v): return expected as? String == String(v)
        case let .uint32(v): return expected as? String == String(v)
        case let .int32(v): return expected as? String == String(v)
        case let .uint64(v): return expected as? String == String(v)
        case let .int64(v): return expected as? String == String(v)
        case let .float32(v): return (expected as? Double).map { Float($0) == v } ?? false
        case let .float64(v): return expected as? Double == v
        case let .bool(v): return expected as? Bool == v
        case let .string(v): return expected as? String == v
        case let .array(_, elements):
            guard let list = expected as? [Any], list.count == elements.count else { return false }
            return zip(elements, list).allSatisfy { matches($0, $1) }
        }
    }
}
