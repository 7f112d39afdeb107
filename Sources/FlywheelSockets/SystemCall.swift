#if canImport(Glibc)
import Glibc
#endif

/// The one wrapper every system call goes through. Stateless; callable from any thread.
///
/// Retries `EINTR`, turns `EAGAIN`/`EWOULDBLOCK` into `.wouldBlock`, traps on `EBADF`/`EFAULT` (those mean
/// our own bookkeeping is wrong, never bad input) and throws a `SocketError` naming the call for the rest.
package enum SystemCall {
    @inline(__always)
    package static func run<Result: FixedWidthInteger>(
        _ name: StaticString, _ call: () -> Result
    ) throws(SocketError) -> IOResult<Result> {
        while true {
            let result = call()
            if result >= 0 { return .processed(result) }
            let code = errno
            switch code {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                return .wouldBlock
            case EBADF, EFAULT:
                preconditionFailure("\(name) failed with errno \(code): a descriptor or pointer bug in FlywheelSockets or its users")
            default:
                throw SocketError(call: "\(name)", errno: code)
            }
        }
    }

    /// For calls where `EAGAIN` is not an expected outcome: it is reported as an error like any other.
    @inline(__always)
    @discardableResult
    package static func runBlocking<Result: FixedWidthInteger>(
        _ name: StaticString, _ call: () -> Result
    ) throws(SocketError) -> Result {
        switch try run(name, call) {
        case .processed(let value): return value
        case .wouldBlock: throw SocketError(call: "\(name)", errno: EAGAIN)
        }
    }
}
