#if canImport(Glibc)
import Glibc
#endif

/// Accepts connections on a listening socket and hands each to `onAccept`. Owned by one event loop; all
/// methods run on its thread. Knows nothing about HTTP.
package final class Acceptor: EventLoopHandler {
    private let listener: Socket
    private let loop: EventLoop
    private let onAccept: (Socket, SocketAddress) -> Void
    private var isOpen = true
    private var paused = false

    package init(listener: Socket, loop: EventLoop, onAccept: @escaping (Socket, SocketAddress) -> Void) {
        self.listener = listener
        self.loop = loop
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
                onAccept(socket, address)
            } catch {
                if error.errno == EMFILE || error.errno == ENFILE || error.errno == ENOBUFS || error.errno == ENOMEM {
                    // Out of descriptors: stop polling the listener until the next tick instead of spinning.
                    paused = true
                    try? loop.modify(descriptor: listener.descriptor, events: [])
                    return
                }
                // ECONNABORTED and friends concern one connection only.
            }
        }
    }

    package func tick(nowNanos: UInt64) {
        guard paused, isOpen else { return }
        paused = false
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
