import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// An epoll instance with a reusable event array, used level-triggered. Owned by one event loop thread:
/// `wait` and `event(at:)` must only be called there (`add`/`modify` are safe anywhere but we keep them there too).
/// The `epoll_event` records are built and read by the CLinux shim (they are packed on x86-64).
struct Epoll {
    /// An `epoll_ctl` operation.
    enum Operation {
        case add
        case modify
        case remove

        var code: Int32 {
            switch self {
            case .add: fw_epoll_ctl_add
            case .modify: fw_epoll_ctl_mod
            case .remove: fw_epoll_ctl_del
            }
        }

        var callName: StaticString {
            switch self {
            case .add: "epoll_ctl EPOLL_CTL_ADD"
            case .modify: "epoll_ctl EPOLL_CTL_MOD"
            case .remove: "epoll_ctl EPOLL_CTL_DEL"
            }
        }
    }

    let descriptor: Int32
    let capacity: Int32
    /// `capacity` epoll records, allocated once and reused by every `wait`.
    private let events: UnsafeMutablePointer<epoll_event>

    init(capacity: Int32 = 256) throws(SocketError) {
        descriptor = try SystemCall.runBlocking("epoll_create1") { fw_epoll_create1(O_CLOEXEC) }
        guard let events = fw_epoll_events_allocate(capacity) else {
            _ = Glibc.close(descriptor)
            throw SocketError(call: "epoll event array", errno: ENOMEM)
        }
        self.capacity = capacity
        self.events = events
    }

    /// Frees the event array and closes the epoll descriptor. Call once, after the loop thread has exited.
    func close() {
        fw_epoll_events_free(events)
        _ = Glibc.close(descriptor)
    }

    func add(_ fd: Int32, events interest: EpollEvents, token: UInt64) throws(SocketError) {
        try control(.add, fd, interest, token)
    }

    func modify(_ fd: Int32, events interest: EpollEvents, token: UInt64) throws(SocketError) {
        try control(.modify, fd, interest, token)
    }

    func remove(_ fd: Int32) throws(SocketError) {
        try control(.remove, fd, [], 0)
    }

    private func control(
        _ operation: Operation, _ fd: Int32, _ interest: EpollEvents, _ token: UInt64
    ) throws(SocketError) {
        try SystemCall.runBlocking(operation.callName) {
            fw_epoll_ctl(descriptor, operation.code, fd, interest.rawValue, token)
        }
    }

    /// For descriptors owned by other components (`EventLoop.watch`): returns 0 or the errno, never traps
    /// (a foreign descriptor may have been closed behind our back, so EBADF is an answer, not a bug).
    func foreignControl(_ operation: Operation, _ fd: Int32, _ interest: EpollEvents, _ token: UInt64) -> Int32 {
        while true {
            if fw_epoll_ctl(descriptor, operation.code, fd, interest.rawValue, token) >= 0 { return 0 }
            let code = errno
            if code != EINTR { return code }
        }
    }

    /// Waits up to `timeoutMilliseconds` and returns how many events are ready (read them with `event(at:)`).
    func wait(timeoutMilliseconds: Int32) throws(SocketError) -> Int {
        switch try SystemCall.run("epoll_wait", { fw_epoll_wait(descriptor, events, capacity, timeoutMilliseconds) }) {
        case .processed(let count): return Int(count)
        case .wouldBlock: return 0
        }
    }

    @inline(__always)
    func event(at index: Int) -> (events: EpollEvents, token: UInt64) {
        let slot = Int32(truncatingIfNeeded: index)
        return (EpollEvents(rawValue: fw_epoll_event_events(events, slot)), fw_epoll_event_data(events, slot))
    }
}
