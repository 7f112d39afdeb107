import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif

/// The byte stream under a `Connection`: plain TCP (`Socket`) or TLS (`TLSTransport`). The connection owns its
/// transport and calls it only on its event loop's thread; the loop watches `descriptor` for readiness.
///
/// Results follow `SystemCall`: `.wouldBlock` means "not now, wait for readiness", errors name what failed.
/// Conformers should be small structs (or one class reference) so a connection stores its transport inline,
/// without a box, and each call is one witness-table dispatch.
protocol Transport {
    /// The descriptor whose readiness drives this stream (registered with the loop's epoll).
    var descriptor: Int32 { get }

    /// Reads what is available into `buffer`; `.processed(0)` means the peer closed its side.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> IOResult<Int>

    /// Writes the buffers in order, gathered; returns how many bytes were taken (possibly fewer than all).
    func write(_ vectors: UnsafeMutableBufferPointer<iovec>) throws(SocketError) -> IOResult<Int>

    /// Input the transport holds itself (TLS: decrypted bytes inside OpenSSL) that the descriptor's readiness will
    /// not announce. A read that returns less than its buffer leaves none; a full one may.
    var hasBufferedInput: Bool { get }

    /// Ends our sending side (a TLS transport sends close_notify first); reading stays possible. Errors ignored.
    func shutdownWrite()

    /// Releases the stream and its descriptor (which also leaves the epoll set).
    func close()
}

extension Transport {
    var hasBufferedInput: Bool { false }

    /// Writes one buffer; returns how many bytes were taken.
    @inline(__always)
    func write(_ bytes: UnsafeRawBufferPointer) throws(SocketError) -> IOResult<Int> {
        var vector = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
        return try withUnsafeMutablePointer(to: &vector) { pointer throws(SocketError) in
            try write(UnsafeMutableBufferPointer(start: pointer, count: 1))
        }
    }
}
