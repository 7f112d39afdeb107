@testable import FlywheelHTTP
import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// `Socket` as the plain `Transport` under a connection.
final class TransportTests: XCTestCase {
    private func makePair() throws -> (any Transport, any Transport) {
        var descriptors: [Int32] = [0, 0]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &descriptors) == 0 else { throw SocketError(call: "socketpair", errno: errno) }
        return (Socket(descriptor: descriptors[0]), Socket(descriptor: descriptors[1]))
    }

    func testGatheredWriteArrivesInOrderAndEmptyReadWouldBlock() throws {
        let (left, right) = try makePair()
        defer {
            left.close()
            right.close()
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { buffer.deallocate() }
        guard case .wouldBlock = try right.read(into: buffer) else { return XCTFail("nothing was sent yet") }

        let head = Array("head,".utf8), body = Array("body".utf8)
        let written = try head.withUnsafeBytes { a in
            try body.withUnsafeBytes { b in
                var vectors = [iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                               iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)]
                return try vectors.withUnsafeMutableBufferPointer { try left.write($0) }
            }
        }
        guard case .processed(9) = written else { return XCTFail("expected 9 bytes written, got \(written)") }
        guard case .processed(let count) = try right.read(into: buffer) else { return XCTFail("expected bytes") }
        XCTAssertEqual(Array(buffer[0..<count]), Array("head,body".utf8))
    }

    func testShutdownWriteIsEndOfStreamForThePeer() throws {
        let (left, right) = try makePair()
        defer {
            left.close()
            right.close()
        }
        let last = Array("bye".utf8)
        _ = try last.withUnsafeBytes { try left.write($0) }
        left.shutdownWrite()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { buffer.deallocate() }
        guard case .processed(3) = try right.read(into: buffer) else { return XCTFail("expected the last bytes") }
        guard case .processed(0) = try right.read(into: buffer) else { return XCTFail("expected end of stream") }
    }
}
