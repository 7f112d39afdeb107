#if canImport(Glibc)
import Glibc
#endif

/// An epoll instance with a reusable event array, used level-triggered. Owned by one event loop thread:
/// `wait` and `event(at:)` must only be called there (`add`/`modify` are safe anywhere but we keep them there too).
struct Epoll {
    /// `struct epoll_event` is packed on x86-64 (12 bytes, data at offset 4) and naturally aligned elsewhere.
    #if arch(x86_64)
    private static let eventStride = 12
    private static let dataOffset = 4
    #else
    private static let eventStride = 16
    private static let dataOffset = 8
    #endif

    let descriptor: Int32
    let capacity: Int
    /// Raw storage for `capacity` epoll_event records, allocated once and reused by every `wait`.
    private let events: UnsafeMutableRawBufferPointer

    init(capacity: Int = 256) throws(SocketError) {
        let create = LinuxFunctions.shared.epollCreate1
        descriptor = try SystemCall.runBlocking("epoll_create1") { create(O_CLOEXEC) }
        self.capacity = capacity
        events = .allocate(byteCount: capacity * Self.eventStride, alignment: 16)
    }

    /// Frees the event array and closes the epoll descriptor. Call once, after the loop thread has exited.
    func close() {
        events.deallocate()
        _ = Glibc.close(descriptor)
    }

    func add(_ fd: Int32, events interest: EpollEvents, token: UInt64) throws(SocketError) {
        try control(1, "epoll_ctl EPOLL_CTL_ADD", fd, interest, token)
    }

    func modify(_ fd: Int32, events interest: EpollEvents, token: UInt64) throws(SocketError) {
        try control(3, "epoll_ctl EPOLL_CTL_MOD", fd, interest, token)
    }

    func remove(_ fd: Int32) throws(SocketError) {
        try control(2, "epoll_ctl EPOLL_CTL_DEL", fd, [], 0)
    }

    private func control(
        _ operation: Int32, _ name: StaticString, _ fd: Int32, _ interest: EpollEvents, _ token: UInt64
    ) throws(SocketError) {
        var record: (UInt64, UInt64) = (0, 0)
        let ctl = LinuxFunctions.shared.epollControl
        try withUnsafeMutableBytes(of: &record) { raw throws(SocketError) in
            raw.storeBytes(of: interest.rawValue, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: Self.dataOffset, as: UInt64.self)
            try SystemCall.runBlocking(name) { ctl(descriptor, operation, fd, raw.baseAddress) }
        }
    }

    /// For descriptors owned by other components (`HTTPEventLoop.watch`): returns 0 or the errno, never traps
    /// (a foreign descriptor may have been closed behind our back). Operations: 1 ADD, 2 DEL, 3 MOD.
    func foreignControl(_ operation: Int32, _ fd: Int32, _ interest: EpollEvents, _ token: UInt64) -> Int32 {
        var record: (UInt64, UInt64) = (0, 0)
        let ctl = LinuxFunctions.shared.epollControl
        return withUnsafeMutableBytes(of: &record) { raw in
            raw.storeBytes(of: interest.rawValue, toByteOffset: 0, as: UInt32.self)
            raw.storeBytes(of: token, toByteOffset: Self.dataOffset, as: UInt64.self)
            while true {
                if ctl(descriptor, operation, fd, raw.baseAddress) >= 0 { return 0 }
                let code = errno
                if code != EINTR { return code }
            }
        }
    }

    /// Waits up to `timeoutMilliseconds` and returns how many events are ready (read them with `event(at:)`).
    func wait(timeoutMilliseconds: Int32) throws(SocketError) -> Int {
        let wait = LinuxFunctions.shared.epollWait
        switch try SystemCall.run("epoll_wait", { wait(descriptor, events.baseAddress, Int32(capacity), timeoutMilliseconds) }) {
        case .processed(let count): return Int(count)
        case .wouldBlock: return 0
        }
    }

    @inline(__always)
    func event(at index: Int) -> (events: EpollEvents, token: UInt64) {
        let base = index * Self.eventStride
        let bits = events.loadUnaligned(fromByteOffset: base, as: UInt32.self)
        let token = events.loadUnaligned(fromByteOffset: base + Self.dataOffset, as: UInt64.self)
        return (EpollEvents(rawValue: bits), token)
    }
}
