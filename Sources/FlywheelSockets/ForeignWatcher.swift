/// A descriptor some other component owns, watched through `EventLoop.watch`. Loop thread only.
final class ForeignWatcher: EventLoopHandler {
    var callback: (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void

    init(_ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void) {
        self.callback = callback
    }

    func handleEvents(_ events: EpollEvents) {
        let error = !events.isDisjoint(with: [.error, .hangup])
        callback(events.contains(.input) || events.contains(.readHangup), events.contains(.output), error)
    }

    func tick(nowNanos: UInt64) {}
    func loopWillStop() {}
}
