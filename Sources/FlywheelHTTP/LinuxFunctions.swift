#if canImport(Glibc)
import Glibc
#endif

/// Linux-only libc entry points that the Swift `Glibc` module does not import (epoll, eventfd, accept4),
/// resolved once with `dlsym`. Immutable after first use; safe on any thread.
struct LinuxFunctions: Sendable {
    typealias EpollCreate1 = @convention(c) (Int32) -> Int32
    typealias EpollControl = @convention(c) (Int32, Int32, Int32, UnsafeMutableRawPointer?) -> Int32
    typealias EpollWait = @convention(c) (Int32, UnsafeMutableRawPointer?, Int32, Int32) -> Int32
    typealias EventFD = @convention(c) (UInt32, Int32) -> Int32
    typealias Accept4 = @convention(c) (
        Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32
    ) -> Int32

    let epollCreate1: EpollCreate1
    let epollControl: EpollControl
    let epollWait: EpollWait
    let eventFD: EventFD
    let accept4: Accept4

    /// Resolved on first use (Swift globals are initialised exactly once, thread-safely).
    static let shared = LinuxFunctions()

    private init() {
        let handle = dlopen(nil, RTLD_NOW)
        func resolve<F>(_ name: String, as type: F.Type) -> F {
            guard let symbol = dlsym(handle, name) else {
                fatalError("libc does not export \(name); FlywheelHTTP needs Linux with epoll")
            }
            return unsafeBitCast(symbol, to: type)
        }
        epollCreate1 = resolve("epoll_create1", as: EpollCreate1.self)
        epollControl = resolve("epoll_ctl", as: EpollControl.self)
        epollWait = resolve("epoll_wait", as: EpollWait.self)
        eventFD = resolve("eventfd", as: EventFD.self)
        accept4 = resolve("accept4", as: Accept4.self)
    }
}
