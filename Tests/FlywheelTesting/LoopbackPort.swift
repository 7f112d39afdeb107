#if canImport(Glibc)
import Glibc
#endif

/// Loopback ports for tests.
public enum LoopbackPort {
    /// A TCP socket bound to 127.0.0.1 on a port the kernel picked, listening when `listen` is true.
    /// Throws the errno of the call that failed.
    public static func bind(listen shouldListen: Bool) throws -> (fd: Int32, port: UInt16) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard Glibc.bind(fd, pointer, length) == 0, !shouldListen || listen(fd, 1024) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard result == 0 else {
            let failure = errno
            close(fd)
            throw TestSupportError("bind/listen/getsockname on 127.0.0.1: errno \(failure)")
        }
        return (fd, UInt16(bigEndian: address.sin_port))
    }

    /// A port on which nothing listens: bound once on 127.0.0.1 (so the kernel picked a free one), then closed.
    /// Connecting to it is refused at once.
    public static func unused() -> UInt16 {
        do {
            let (fd, port) = try bind(listen: false)
            close(fd)
            return port
        } catch {
            preconditionFailure("\(error)")
        }
    }
}
