#if canImport(Glibc)
import Glibc
#endif

/// Loopback ports for tests.
public enum LoopbackPort {
    /// A port on which nothing listens: bound once on 127.0.0.1 (so the kernel picked a free one), then closed.
    /// Connecting to it is refused at once.
    public static func unused() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket: errno \(errno)")
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        precondition(result == 0, "bind/getsockname: errno \(errno)")
        return UInt16(bigEndian: address.sin_port)
    }
}
