import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif

/// A plain TCP connection is its socket: every call is the one system call.
extension Socket: Transport {
    @inline(__always)
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> IOResult<Int> {
        try receive(into: buffer)
    }

    @inline(__always)
    func write(_ vectors: UnsafeMutableBufferPointer<iovec>) throws(SocketError) -> IOResult<Int> {
        try send(vectors)
    }
}
