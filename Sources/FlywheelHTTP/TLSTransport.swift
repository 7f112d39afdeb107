import COpenSSL
import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif

/// A TLS stream over a non-blocking socket whose handshake is done (`TLSHandshake` runs it), for a `Connection`.
/// Loop thread only, like the connection that owns it.
///
/// - Reading drains OpenSSL: it calls `SSL_read` until the buffer is full or OpenSSL needs more bytes from the
///   socket. So a read that returns less than the buffer leaves no decrypted bytes behind, which level-triggered
///   epoll could not report; a full read may, and `hasBufferedInput` says so.
/// - Writing: gathered buffers are coalesced into one record (up to 16 KiB) or written straight from the first
///   buffer when it is large. OpenSSL is in partial-write mode with a moving buffer, and the connection always
///   retries with the same unsent bytes first and never fewer of them, which is what `SSL_write` requires after
///   WANT_WRITE. WANT_READ/WANT_WRITE are `.wouldBlock`: the connection then waits for readiness as on TCP.
/// - `shutdownWrite` sends close_notify, then FIN; `close` frees the `SSL` and closes the socket (also on deinit,
///   should an owner forget).
final class TLSTransport: Transport {
    /// Bytes per TLS record: gathering beyond it would only be split again.
    private static let recordBytes = 16 * 1024

    private let socket: Socket
    private var ssl: OpaquePointer?
    private let liveSessions: TLSSessionCounter

    var descriptor: Int32 { socket.descriptor }

    init(socket: Socket, ssl: OpaquePointer, liveSessions: TLSSessionCounter) {
        self.socket = socket
        self.ssl = ssl
        self.liveSessions = liveSessions
    }

    deinit {
        if let ssl {
            SSL_free(ssl)
            liveSessions.released()
        }
    }

    /// Decrypted bytes OpenSSL holds (or raw bytes it read ahead) that the socket's readiness will not announce.
    var hasBufferedInput: Bool {
        guard let ssl else { return false }
        return SSL_has_pending(ssl) == 1
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> IOResult<Int> {
        guard let ssl, let base = buffer.baseAddress else { return .processed(0) }
        var total = 0
        while total < buffer.count {
            ERR_clear_error()
            let asked = Int32(clamping: buffer.count - total)
            let count = SSL_read(ssl, base + total, asked)
            if count > 0 {
                total += Int(count)
                continue
            }
            switch SSL_get_error(ssl, count) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return total > 0 ? .processed(total) : .wouldBlock
            case SSL_ERROR_ZERO_RETURN:
                // close_notify (or, with SSL_OP_IGNORE_UNEXPECTED_EOF, a bare FIN): the end of the stream, which
                // OpenSSL keeps reporting, so bytes read before it are returned first.
                return .processed(total)
            case SSL_ERROR_SYSCALL where total > 0:
                return .processed(total)
            case SSL_ERROR_SYSCALL:
                let code = errno
                ERR_clear_error()
                throw SocketError(call: "SSL_read", errno: code != 0 ? code : ECONNRESET)
            default:
                ERR_clear_error()
                if total > 0 { return .processed(total) }
                throw SocketError(call: "SSL_read", errno: EPROTO)
            }
        }
        return .processed(total)
    }

    func write(_ vectors: UnsafeMutableBufferPointer<iovec>) throws(SocketError) -> IOResult<Int> {
        guard ssl != nil else { throw SocketError(call: "SSL_write", errno: EPIPE) }
        guard let first = vectors.first else { return .processed(0) }
        if vectors.count == 1 || first.iov_len >= Self.recordBytes {
            return try write(UnsafeRawPointer(first.iov_base), count: first.iov_len)
        }
        var total = 0
        for vector in vectors { total += vector.iov_len }
        let gathered = min(total, Self.recordBytes)
        return try withUnsafeTemporaryAllocation(byteCount: gathered, alignment: 16) { staging throws(SocketError) in
            var filled = 0
            for vector in vectors where filled < gathered {
                let count = min(vector.iov_len, gathered - filled)
                guard count > 0, let source = vector.iov_base else { continue }
                (staging.baseAddress! + filled).copyMemory(from: source, byteCount: count)
                filled += count
            }
            return try write(UnsafeRawPointer(staging.baseAddress), count: filled)
        }
    }

    private func write(_ bytes: UnsafeRawPointer?, count: Int) throws(SocketError) -> IOResult<Int> {
        guard let ssl, let bytes, count > 0 else { return .processed(0) }
        ERR_clear_error()
        let written = SSL_write(ssl, bytes, Int32(clamping: count))
        if written > 0 { return .processed(Int(written)) }
        switch SSL_get_error(ssl, written) {
        case SSL_ERROR_WANT_WRITE, SSL_ERROR_WANT_READ:
            return .wouldBlock
        case SSL_ERROR_SYSCALL:
            let code = errno
            ERR_clear_error()
            throw SocketError(call: "SSL_write", errno: code != 0 ? code : EPIPE)
        default:
            ERR_clear_error()
            throw SocketError(call: "SSL_write", errno: EPROTO)
        }
    }

    func shutdownWrite() {
        if let ssl {
            // One attempt: close_notify goes out unless the socket is full, and the peer closing is all we await.
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
        }
        socket.shutdownWrite()
    }

    func close() {
        if let ssl {
            SSL_free(ssl)
            self.ssl = nil
            liveSessions.released()
        }
        socket.close()
    }
}
