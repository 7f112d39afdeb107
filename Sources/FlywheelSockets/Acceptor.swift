#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on a listening socket and hands each to `onAccept`. Owned by one event loop; all
/// methods run on its thread. Knows nothing about HTTP.
///
/// Out of descriptors (EMFILE, ENFILE) or kernel memory (ENOBUFS, ENOMEM), `accept` fails while the pending
/// connection stays queued, so a level-triggered listener would be reported ready again at once: a spin. The
/// acceptor instead stops watching the listener until the loop's next tick (at most 250 ms), then tries again;
/// the queued connections wait in the backlog and are accepted once descriptors are free. `onShortage` hears of
/// it once when it starts (with the errno) and once when an accept succeeds again (with 0), never per attempt.
package final class Acceptor: EventLoopHandler {
    private let listener: Socket
    private let loop: EventLoop
    private let onAccept: (Socket, SocketAddress) -> Void
    private let onShortage: ((_ errno: Int32, _ pausedTicks: Int) -> Void)?
    private var isOpen = true
    private var paused = false
    /// Ticks spent paused in the current shortage; nil when there is none.
    private var shortageTicks: Int?

    package init(listener: Socket, loop: EventLoop, onShortage: ((_ errno: Int32, _ pausedTicks: Int) -> Void)? = nil,
                 onAccept: @escaping (Socket, SocketAddress) -> Void) {
        self.listener = listener
        self.loop = loop
        self.onShortage = onShortage
        self.onAccept = onAccept
    }

    package func start() throws(SocketError) {
        try loop.register(self, descriptor: listener.descriptor, events: .input)
    }

    package func handleEvents(_ events: EpollEvents) {
        // Bounded so one busy listener cannot starve the connections of this loop.
        for _ in 0..<64 where isOpen {
            do {
                guard let (socket, address) = try listener.accept() else { return }
                if let ticks = shortageTicks {
                    shortageTicks = nil
                    onShortage?(0, ticks)
                }
                onAccept(socket, address)
            } catch {
                if error.errno == EMFILE || error.errno == ENFILE || error.errno == ENOBUFS || error.errno == ENOMEM {
                    // Out of descriptors: stop polling the listener until the next tick instead of spinning.
                    paused = true
                    try? loop.modify(descriptor: listener.descriptor, events: [])
                    if shortageTicks == nil {
                        shortageTicks = 0
                        onShortage?(error.errno, 0)
                    }
                    return
                }
                // ECONNABORTED and friends concern one connection only.
            }
        }
    }

    package func tick(nowNanos: UInt64) {
        guard paused, isOpen else { return }
        paused = false
        shortageTicks? += 1
        try? loop.modify(descriptor: listener.descriptor, events: .input)
    }

    package func loopWillStop() {
        close()
    }

    /// Stops accepting: new connection attempts are refused from now on.
    package func close() {
        guard isOpen else { return }
        isOpen = false
        loop.deregister(descriptor: listener.descriptor)
        listener.close()
    }
}
