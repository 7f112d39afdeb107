import Dispatch
import FlywheelConfig
import FlywheelDaemon
import FlywheelGateway
import FlywheelHTTP
import FlywheelStore
import FlywheelUpstream

/// The real daemon (`Daemon`, as `flywheel serve` assembles it) on 127.0.0.1 and a free port, logging to a
/// temporary SQLite file through an `ObservedLog`, so tests can wait for rows, and with the event loops at
/// hand so tests can let them finish their work.
///
/// Configure it with the YAML a user would write; `server.listen`, `server.event_loops` and `log.path` are set here.
public final class GatewayHarness {
    public let configuration: GatewayConfiguration
    public let database: TemporaryDatabase
    public let log: ObservedLog
    private let daemon: Daemon
    private var stopped = false

    /// Starts the daemon with `yaml` (a configuration file's text) on `eventLoops` loops.
    public init(yaml: String, eventLoops: Int = 2, environment: [String: String] = [:]) throws {
        var configuration = try GatewayConfiguration.parse(yaml: yaml, source: "test configuration", environment: environment)
        configuration.server.listen = "127.0.0.1:0"
        configuration.server.eventLoops = eventLoops
        let database = try TemporaryDatabase()
        configuration.log.path = database.path
        self.configuration = configuration
        self.database = database
        var observed: ObservedLog?
        daemon = try Daemon(configuration: configuration) { configuration in
            let writer = try SQLiteLogWriter(path: configuration.log.path, capacity: configuration.log.queueCapacity,
                                             maxBatch: configuration.log.batchSize, flushInterval: configuration.log.flushInterval)
            let log = ObservedLog(writer: writer)
            observed = log
            return log
        }
        log = observed!
        do {
            try daemon.start()
        } catch {
            daemon.shutdown()
            throw error
        }
    }

    /// The gateway the daemon serves.
    public var gateway: Gateway { daemon.gateway }

    deinit { stop() }

    public var port: UInt16 { daemon.port }

    /// A new keep-alive connection to the gateway.
    public func connect() throws -> TestHTTPClient {
        try TestHTTPClient(port: port)
    }

    /// The committed log row of request `id`, once the gateway wrote it; nil when it never did.
    public func loggedRequest(_ id: String, timeout: Double = 10) throws -> RequestRecord? {
        guard log.waitUntilStored(id, timeout: timeout) else { return nil }
        return try database.request(id: id)
    }

    /// Runs an empty task on every event loop and waits for them: whatever the loops were doing when this was
    /// called (callbacks, queued tasks) has finished, and the references those held are released.
    public func drainEventLoops() {
        let loops = daemon.eventLoops
        let done = DispatchSemaphore(value: 0)
        for loop in loops { loop.execute { done.signal() } }
        for _ in loops { _ = done.wait(timeout: .now() + 10) }
    }

    /// Client connections open now, as `/metrics` reports them.
    public var openConnections: Int { daemon.openConnections }

    /// `Daemon.shutdown` (grace `server.shutdown_grace`), leaving the log file behind for reading. Idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        daemon.shutdown()
    }
}
