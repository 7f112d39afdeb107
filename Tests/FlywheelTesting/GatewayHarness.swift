import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelHTTP
import FlywheelStore
import FlywheelUpstream

/// The real gateway on 127.0.0.1 and a free port, logging to a temporary SQLite file: the parts `Daemon`
/// assembles (log writer, per-loop upstream clients, gateway, HTTP server with the gateway's error renderer),
/// put together the same way, with the log observed (`ObservedLog`) so tests can wait for rows, and the event
/// loops at hand so tests can let them finish their work. Keep `init` in step with `Daemon.init`.
///
/// Configure it with the YAML a user would write; `server.listen` and `log.path` are set here.
public final class GatewayHarness {
    public let configuration: GatewayConfiguration
    public let database: TemporaryDatabase
    public let log: ObservedLog
    public let gateway: Gateway
    private let server: HTTPServer
    private let upstreams: UpstreamPool
    private var stopped = false

    /// Starts the gateway with `yaml` (a configuration file's text) on `eventLoops` loops.
    public init(yaml: String, eventLoops: Int = 2, environment: [String: String] = [:]) throws {
        var configuration = try GatewayConfiguration.parse(yaml: yaml, source: "test configuration", environment: environment)
        configuration.server.listen = "127.0.0.1:0"
        configuration.server.eventLoops = eventLoops
        let database = try TemporaryDatabase()
        configuration.log.path = database.path
        try configuration.validate()
        self.configuration = configuration
        self.database = database

        let writer = try SQLiteLogWriter(path: configuration.log.path, capacity: configuration.log.queueCapacity,
                                         maxBatch: configuration.log.batchSize, flushInterval: configuration.log.flushInterval)
        log = ObservedLog(writer: writer)
        upstreams = UpstreamPool()
        gateway = Gateway(configuration: configuration, upstreams: upstreams, log: log)
        var http = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
        http.eventLoopCount = eventLoops
        http.maxBodyBytes = configuration.server.maxBodyBytes
        http.maxHeaderBytes = configuration.server.maxHeaderBytes
        http.maxConnections = configuration.server.maxConnections
        http.requestTimeout = configuration.server.requestTimeout
        http.idleTimeout = configuration.server.idleTimeout
        http.writeTimeout = configuration.server.writeTimeout
        http.errorRenderer = { status, message in
            OpenAIError.forHTTPStatus(status, message: message).response(requestID: RequestID.newUUIDv7())
        }
        server = HTTPServer(configuration: http, responder: gateway)
        var client = UpstreamClientConfiguration()
        client.verifyTLS = configuration.upstreamTLS.verify
        client.caBundlePath = configuration.upstreamTLS.caBundle
        do {
            try upstreams.attach(to: server.eventLoops, configuration: client)
            gateway.setConnectionCounter { [weak server] in server?.openConnectionCount ?? 0 }
            try server.start()
        } catch {
            server.shutdown(gracePeriod: 0)
            upstreams.shutdown()
            writer.close()
            throw error
        }
    }

    deinit { stop() }

    public var port: UInt16 { server.port }

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
        let loops = server.eventLoops
        let done = DispatchSemaphore(value: 0)
        for loop in loops { loop.execute { done.signal() } }
        for _ in loops { _ = done.wait(timeout: .now() + 10) }
    }

    /// Client connections open now, as `/metrics` reports them.
    public var openConnections: Int { server.openConnectionCount }

    /// The orderly stop `Daemon.shutdown` does (grace `server.shutdown_grace`), leaving the log file behind
    /// for reading. Idempotent.
    public func stop() {
        guard !stopped else { return }
        stopped = true
        server.shutdown(gracePeriod: configuration.server.shutdownGrace)
        upstreams.shutdown()
        log.close()
    }
}
