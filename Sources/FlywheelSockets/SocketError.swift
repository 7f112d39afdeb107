#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, and the errno it set. Immutable value; safe on any thread.
public struct SocketError: Error, Equatable, CustomStringConvertible {
    /// The call that failed, e.g. `"bind"` or `"epoll_ctl EPOLL_CTL_MOD"`.
    public var call: String
    /// The errno value (or a getaddrinfo `EAI_*` code when `call` is `"getaddrinfo"`).
    public var errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String {
        if call == "getaddrinfo" {
            return "\(call): \(String(cString: gai_strerror(errno))) (code \(errno))"
        }
        return "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}
