import FlywheelEngine
import XCTest

/// Truncation and mutation fuzzing of the fixture: every input must open or throw, never trap.
/// The in-memory path parses an exactly-sized heap copy; debug builds bounds-check every
/// `UnsafeRawBufferPointer` access, so an out-of-range read would trap the test.
final class GGUFFuzzTests: XCTestCase {
    /// Where the last tensor of the fixture ends: shorter prefixes must fail, longer ones (padding) may open.
    private func end(of file: GGUFFile) -> Int {
        file.tensors.map { file.dataOffset + $0.offset + ($0.byteCount ?? 0) }.max() ?? file.dataOffset
    }

    /// Opening succeeded: every tensor's bytes must lie inside the file; touch them all.
    private func checkInvariants(_ file: GGUFFile) throws {
        for info in file.tensors {
            guard let count = info.byteCount else { continue }
            XCTAssertLessThanOrEqual(file.dataOffset + info.offset + count, file.fileSize)
            let sum = try file.withTensorBytes(info.name) { raw in raw.reduce(0) { $0 &+ Int($1) } }
            XCTAssertGreaterThanOrEqual(sum, 0)
        }
    }

    func testEveryPrefixThrowsInMemory() throws {
        let bytes = try GGUFFixture.bytes("tiny.gguf")
        let full = try GGUFFile(bytes: bytes)
        let needed = end(of: full)
        for length in 0 ..< bytes.count {
            do {
                let file = try GGUFFile(bytes: bytes[0 ..< length])
                XCTAssertGreaterThanOrEqual(length, needed, "prefix \(length) opened")
                try checkInvariants(file)
            } catch let error as GGUFError {
                XCTAssertLessThan(length, needed, "prefix \(length): \(error)")
            }
        }
    }

    func testSampledPrefixesThrowMapped() throws {
        let bytes = try GGUFFixture.bytes("tiny.gguf")
        let needed = end(of: try GGUFFile(bytes: bytes))
        for length in stride(from: 0, to: needed, by: 61) {
            let path = try GGUFFixture.temporaryFile(Array(bytes[0 ..< length]), name: "prefix.gguf")
            defer { try? FileManager.default.removeItem(atPath: path) }
            XCTAssertThrowsError(try GGUFFile(path: path), "prefix \(length)")
        }
    }

    func testRandomMutationsOpenOrThrow() throws {
        for fixture in ["tiny.gguf", "unsupported.gguf"] {
            let original = try GGUFFixture.bytes(fixture)
            let headerEnd = try GGUFFile(bytes: original).dataOffset
            var rng = SplitMix64(seed: 0x5EED_6606)
            var opened = 0
            var thrown = 0
            let interesting: [UInt64] = [0, 1, 4, 9, 13, 31, 32, 0x7F, 0xFF, 0xFFFF, 0xFFFF_FFFF, 1 << 31, 1 << 32,
                                         1 << 62, 1 << 63, .max, .max - 1, UInt64(original.count)]
            for _ in 0 ..< 2000 {
                var bytes = original
                for _ in 0 ... rng.next(below: 3) {
                    let at = rng.next(below: headerEnd)
                    switch rng.next(below: 4) {
                    case 0: bytes[at] ^= UInt8(1 << rng.next(below: 8))
                    case 1: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 2:  // an interesting u64/u32 at a random place
                        let value = interesting[rng.next(below: interesting.count)]
                        let width = rng.next(below: 2) == 0 ? 4 : 8
                        for i in 0 ..< width where at + i < bytes.count {
                            bytes[at + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
                        }
                    default:  // drop or duplicate a byte, shifting everything after it
                        if rng.next(below: 2) == 0 { bytes.remove(at: at) } else { bytes.insert(bytes[at], at: at) }
                    }
                }
                do {
                    try checkInvariants(try GGUFFile(bytes: bytes))
                    opened += 1
                } catch is GGUFError {
                    thrown += 1
                }
            }
            XCTAssertGreaterThan(thrown, 0, fixture)
            XCTAssertGreaterThan(opened, 0, fixture)
        }
    }
}
