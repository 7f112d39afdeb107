import CLinux

/// The readiness bits of one epoll registration or report (`EPOLLIN`, `EPOLLOUT`, ...).
struct EpollEvents: OptionSet, Sendable {
    let rawValue: UInt32

    static let input = EpollEvents(rawValue: fw_epollin)
    static let output = EpollEvents(rawValue: fw_epollout)
    /// Always reported, whether asked for or not.
    static let error = EpollEvents(rawValue: fw_epollerr)
    /// Always reported, whether asked for or not.
    static let hangup = EpollEvents(rawValue: fw_epollhup)
    /// The peer shut down its writing side.
    static let readHangup = EpollEvents(rawValue: fw_epollrdhup)
}
