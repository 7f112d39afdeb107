import FlywheelHTTP
import FlywheelUpstream

/// Runs an `UpstreamClient` on one of the HTTP server's event loops, so a request is received, sent upstream
/// and answered on one thread, with no hop between threads. A thin adapter: the two modules do not know
/// each other.
final class EventLoopUpstreamDriver: UpstreamEventDriver {
    let loop: HTTPEventLoop

    init(loop: HTTPEventLoop) { self.loop = loop }

    var inDriverThread: Bool { loop.inEventLoop }

    func execute(_ task: @escaping @Sendable () -> Void) { loop.execute(task) }

    func watch(descriptor: Int32, readable: Bool, writable: Bool,
               _ callback: @escaping (_ readable: Bool, _ writable: Bool, _ error: Bool) -> Void) throws {
        try loop.watch(descriptor: descriptor, readable: readable, writable: writable, callback)
    }

    func unwatch(descriptor: Int32) { loop.unwatch(descriptor: descriptor) }

    func schedule(afterMilliseconds milliseconds: Int, _ callback: @escaping () -> Void) -> any UpstreamDriverTimer {
        LoopTimer(loop.schedule(afterMilliseconds: milliseconds, callback))
    }

    func cancel(_ timer: any UpstreamDriverTimer) {
        if let timer = timer as? LoopTimer { loop.cancel(timer.timer) }
    }

    final class LoopTimer: UpstreamDriverTimer {
        let timer: HTTPEventLoopTimer
        init(_ timer: HTTPEventLoopTimer) { self.timer = timer }
    }
}
