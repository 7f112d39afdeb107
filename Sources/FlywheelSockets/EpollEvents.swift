import CLinux

/// The readiness bits of one epoll registration or report (`EPOLLIN`, `EPOLLOUT`, ...).
package struct EpollEvents: OptionSet, Sendable {
    package let rawValue: UInt32

    package init(rawValue: UInt32) {
        self.rawValue = rawValue
    }

    package static let input = EpollEvents(rawValue: fw_epollin)
    package static let output = EpollEvents(rawValue: fw_epollout)
    /// Always reported, whether asked for or not.
    package static let error = EpollEvents(rawValue: fw_epollerr)
    /// Always reported, whether asked for or not.
    package static let hangup = EpollEvents(rawValue: fw_epollhup)
    /// The peer shut down its writing side.
    package static let readHangup = EpollEvents(rawValue: fw_epollrdhup)
}
