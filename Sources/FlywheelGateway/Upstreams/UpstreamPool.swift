import FlywheelHTTP
import FlywheelUpstream
import Synchronization

/// One `UpstreamClient` per HTTP event loop (each with its own curl multi handle and connection pool), so that
/// upstream work for a connection stays on the connection's own loop thread. Filled once, before the server
/// starts; read by every request.
public final class UpstreamPool: Sendable {
    private let clients = Mutex<[UpstreamClient]>([])

    public init() {}

    /// Creates a client on each loop. Call once, before the server starts accepting.
    public func attach(to loops: [HTTPEventLoop], configuration: UpstreamClientConfiguration = .init()) throws {
        let created = try loops.map { try UpstreamClient(configuration: configuration, driver: EventLoopUpstreamDriver(loop: $0)) }
        clients.withLock { $0 = created }
    }

    /// The client that runs on `loop`'s thread.
    func client(for loop: HTTPEventLoop) -> UpstreamClient? {
        clients.withLock { $0.indices.contains(loop.index) ? $0[loop.index] : $0.first }
    }

    /// Ends every client's transfers (their handlers get `.shutdown`) and releases curl. Idempotent.
    public func shutdown() {
        for client in clients.withLock({ $0 }) { client.shutdown() }
    }
}
