/// The readiness bits of one epoll registration or report (`EPOLLIN`, `EPOLLOUT`, ...).
struct EpollEvents: OptionSet, Sendable {
    let rawValue: UInt32

    static let input = EpollEvents(rawValue: 0x001)       // EPOLLIN
    static let output = EpollEvents(rawValue: 0x004)      // EPOLLOUT
    static let error = EpollEvents(rawValue: 0x008)       // EPOLLERR (always reported)
    static let hangup = EpollEvents(rawValue: 0x010)      // EPOLLHUP (always reported)
    static let readHangup = EpollEvents(rawValue: 0x2000) // EPOLLRDHUP: peer shut down its writing side
}
