import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A non-blocking stream socket descriptor. A plain value: the owner (one event loop) decides when to close it.
/// Methods may be called from any thread, but each descriptor has exactly one owner that reads, writes and closes it.
package struct Socket: Sendable, Hashable {
    package let descriptor: Int32

    /// Takes an open stream socket descriptor (the caller hands over ownership).
    package init(descriptor: Int32) {
        self.descriptor = descriptor
    }

    /// A non-blocking listening socket bound to `address` with `SO_REUSEADDR` (and dual-stack for IPv6).
    package static func makeListener(address: SocketAddress, backlog: Int32) throws(SocketError) -> Socket {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = try SystemCall.runBlocking("socket") { Glibc.socket(address.family, type, 0) }
        let socket = Socket(descriptor: fd)
        do {
            try socket.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, callName: "setsockopt SO_REUSEADDR")
            if address.family == AF_INET6 {
                try socket.setOption(level: Int32(IPPROTO_IPV6), name: IPV6_V6ONLY, value: 0, callName: "setsockopt IPV6_V6ONLY")
            }
            var storage = address.storage
            _ = try withUnsafePointer(to: &storage) { pointer throws(SocketError) in
                try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SocketError) in
                    try SystemCall.runBlocking("bind") { Glibc.bind(fd, sa, address.length) }
                }
            }
            try SystemCall.runBlocking("listen") { Glibc.listen(fd, backlog) }
        } catch {
            socket.close()
            throw error
        }
        return socket
    }

    /// Accepts one pending connection as a non-blocking socket; nil when none is waiting.
    package func accept() throws(SocketError) -> (Socket, SocketAddress)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let flags = Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let result = try withUnsafeMutablePointer(to: &storage) { pointer throws(SocketError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SocketError) in
                try SystemCall.run("accept4") { fw_accept4(descriptor, sa, &length, flags) }
            }
        }
        switch result {
        case .processed(let fd): return (Socket(descriptor: fd), SocketAddress(storage: storage, length: length))
        case .wouldBlock: return nil
        }
    }

    /// One `recv`; `.processed(0)` means the peer closed its side.
    @inline(__always)
    package func receive(into buffer: UnsafeMutableRawBufferPointer) throws(SocketError) -> IOResult<Int> {
        try SystemCall.run("recv") { Glibc.recv(descriptor, buffer.baseAddress, buffer.count, 0) }
    }

    /// One gathering `sendmsg` with `MSG_NOSIGNAL` (a vanished peer gives EPIPE, never SIGPIPE).
    @inline(__always)
    package func send(_ vectors: UnsafeMutableBufferPointer<iovec>) throws(SocketError) -> IOResult<Int> {
        var message = msghdr()
        message.msg_iov = vectors.baseAddress
        message.msg_iovlen = vectors.count
        return try SystemCall.run("sendmsg") { Glibc.sendmsg(descriptor, &message, Int32(MSG_NOSIGNAL)) }
    }

    package func setNoDelay() throws(SocketError) {
        try setOption(level: Int32(IPPROTO_TCP), name: Int32(TCP_NODELAY), value: 1, callName: "setsockopt TCP_NODELAY")
    }

    package func setOption(level: Int32, name: Int32, value: Int32, callName: StaticString) throws(SocketError) {
        var value = value
        try SystemCall.runBlocking(callName) {
            setsockopt(descriptor, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
        }
    }

    /// Sends FIN; reading stays possible. Errors (peer already gone) are irrelevant here and ignored.
    package func shutdownWrite() {
        _ = Glibc.shutdown(descriptor, Int32(SHUT_WR))
    }

    /// Closes the descriptor (which also removes it from any epoll set). Not retried on EINTR: on Linux the
    /// descriptor is released even then, and retrying could close someone else's.
    package func close() {
        _ = Glibc.close(descriptor)
    }

    package func localAddress() throws(SocketError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = try withUnsafeMutablePointer(to: &storage) { pointer throws(SocketError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa throws(SocketError) in
                try SystemCall.runBlocking("getsockname") { getsockname(descriptor, sa, &length) }
            }
        }
        return SocketAddress(storage: storage, length: length)
    }
}
