import FlywheelConfig
import Foundation
import FlywheelEngine
import FlywheelGateway
import FlywheelHTTP
import FlywheelLoop
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// The daemon assembled: the log writer, the local models, the per-loop upstream clients, the gateway and the
/// HTTP server, started and stopped in the order that loses nothing (stop accepting, drain requests, stop
/// upstreams, stop inference, flush the log). The one place that knows every part; the CLI only calls it.
public final class Daemon: Sendable {
    public let configuration: GatewayConfiguration
    public let gateway: Gateway
    private let http: HTTPServer
    private let upstreams: UpstreamPool
    private let log: any LogSink
    /// The traffic policies in force: the configuration's, with the newest promotion or rollback applied.
    private let policies: PolicySync
    /// The scheduled drift check, when configured.
    private let driftWatch: DriftWatch?
    /// The dashboard's log-based figures, computed while someone watches.
    private let dashboardJob: DashboardJob
    /// The log's virtual keys, polled and swapped into the gateway.
    private let keySync: KeySync
    /// One reload at a time (SIGHUP and `POST /admin/reload`).
    private let reloading = Mutex<Void>(())
    /// What the start-up says about authentication.
    public let authSummary: String
    /// The facade running local models, as the gateway holds it: created at start when some are configured, or
    /// by the first reload that adds one.
    private var inference: LocalInference? { gateway.inference }
    /// The local models served now, in configuration order.
    public var localModels: [LocalModel] { inference?.models ?? [] }

    /// Opens the log the configuration names: SQLite at `log.path`.
    public static func openLog(_ configuration: GatewayConfiguration) throws -> any LogSink {
        do {
            return try SQLiteLogWriter(path: configuration.log.path, capacity: configuration.log.queueCapacity,
                                       maxBatch: configuration.log.batchSize, flushInterval: configuration.log.flushInterval,
                                       cacheKiB: configuration.log.cacheMB << 10,
                                       feedbackDurability: FeedbackDurability(rawValue: configuration.log.feedbackDurability) ?? .full,
                                       maxSizeBytes: configuration.log.maxSizeMB.map { Int64($0) << 20 },
                                       report: { Self.say($0) })
        } catch {
            throw ConfigurationError("cannot open the log database \(configuration.log.path): \(error)")
        }
    }

    /// Builds the daemon; loads every configured local model first (mapping the files), so a bad
    /// model file fails start-up with a message naming it. `openLog` opens the log sink (tests wrap it).
    public init(configuration: GatewayConfiguration,
                openLog: (GatewayConfiguration) throws -> any LogSink = Daemon.openLog) throws {
        try configuration.validate()
        try configuration.checkPolicyTargets()
        if let drift = configuration.drift { try DriftWatch.checkRanges(drift) }
        self.configuration = configuration
        let address = try ListenAddress(parsing: configuration.server.listen)
        let log = try openLog(configuration)
        var inference: LocalInference?
        if !configuration.localModels.isEmpty {
            do {
                inference = try Self.makeInference(configuration, models: configuration.localModels)
            } catch {
                log.close()
                throw ConfigurationError("local_models: \(error)")
            }
        }
        let upstreams = UpstreamPool()
        let gateway = Gateway(configuration: configuration, upstreams: upstreams, log: log,
                              localModels: inference.map(LocalModelAdapter.entries(for:)) ?? [], inference: inference)
        let keySync = KeySync(gateway: gateway, path: configuration.log.path) { Self.say($0) }
        let virtualKeys = keySync.load() ?? 0
        do {
            authSummary = try Self.checkOpenness(configuration, address: address, virtualKeys: virtualKeys)
        } catch {
            inference?.shutdown()
            log.close()
            throw error
        }
        var http = HTTPServerConfiguration(host: address.host, port: address.port)
        if let loops = configuration.server.eventLoops { http.eventLoopCount = max(1, loops) }
        http.maxBodyBytes = configuration.server.maxBodyBytes
        http.maxBufferedBodyBytes = configuration.server.maxBufferedBodyBytes
        http.bodyLimit = Gateway.bodyLimit(feedbackMaxBytes: configuration.feedback.maxBodyBytes)
        http.maxHeaderBytes = configuration.server.maxHeaderBytes
        http.maxConnections = configuration.server.maxConnections
        http.requestTimeout = configuration.server.requestTimeout
        http.idleTimeout = configuration.server.idleTimeout
        http.writeTimeout = configuration.server.writeTimeout
        http.report = { Self.say("flywheel: " + $0) }
        http.errorRenderer = { status, message in
            OpenAIError.forHTTPStatus(status, message: message).response(requestID: RequestID.newUUIDv7())
        }
        let server = HTTPServer(configuration: http, responder: gateway)
        do {
            // Each event loop drives its own curl multi handle: no thread hop on the request path.
            var client = UpstreamClientConfiguration()
            client.verifyTLS = configuration.upstreamTLS.verify
            client.caBundlePath = configuration.upstreamTLS.caBundle
            try upstreams.attach(to: server.eventLoops, configuration: client)
        } catch {
            inference?.shutdown()
            log.close()
            throw error
        }
        gateway.setConnectionCounter { [weak server] in server?.openConnectionCount ?? 0 }
        self.gateway = gateway
        self.http = server
        self.upstreams = upstreams
        self.log = log
        self.policies = PolicySync(gateway: gateway, path: configuration.log.path) { Self.say($0) }
        self.driftWatch = configuration.drift.map { settings in
            DriftWatch(settings: settings, path: configuration.log.path, gateway: gateway,
                       tokenizer: { [weak gateway] in settings.localModel.flatMap { gateway?.localTokenizer(named: $0) } },
                       say: { Self.say($0) })
        }
        self.dashboardJob = DashboardJob(gateway: gateway, configuration: configuration)
        self.keySync = keySync
        policies.adopt(configuration.policies)
    }

    /// With no key at all (no `auth.keys`, no virtual key in the log, revoked ones included) the gateway serves
    /// anyone: allowed on a loopback address, elsewhere only with `auth.allow_open`. Returns the line to say at start.
    static func checkOpenness(_ configuration: GatewayConfiguration, address: ListenAddress, virtualKeys: Int) throws -> String {
        let admin = configuration.auth.adminKey == nil
            ? "no admin key (the dashboard and /admin/reload answer loopback peers only)" : "admin key set"
        guard configuration.auth.keys.isEmpty && virtualKeys == 0 else {
            return "auth: on (\(configuration.auth.keys.count) configured keys, \(virtualKeys) virtual keys in the log); \(admin)"
        }
        let loopback = isLoopback(host: address.host)
        guard loopback || configuration.auth.allowOpen else {
            throw ConfigurationError("no API keys exist (auth.keys is empty and the log has no virtual keys), so anyone who can reach \(configuration.server.listen) could use the gateway. Listen on a loopback address (127.0.0.1), create a key first (flywheel keys create --name NAME --db \(configuration.log.path)), or allow it with auth.allow_open: true or --allow-open")
        }
        return "warning: auth: off, no API keys exist: every client is served" + (loopback ? " (loopback only)" : " on a non-loopback address (allow_open)")
            + "; the first `flywheel keys create` turns auth on without a restart; \(admin)"
    }

    static func isLoopback(host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }

    /// The reload `POST /admin/reload` runs: `reload` reads the configuration again and applies it with
    /// `reload(_:)`, the path SIGHUP takes (which runs one reload at a time).
    public func setReloader(_ reload: @escaping @Sendable () throws -> [String]) {
        gateway.setReloader(reload)
    }

    /// A line for the operator on the daemon's stderr.
    static func say(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    private static func specs(_ models: [GatewayConfiguration.LocalModelSettings]) -> [LocalModelSpec] {
        models.map { LocalModelSpec(name: $0.name, path: $0.path, contextLength: $0.contextLength, chatTemplate: $0.chatTemplate) }
    }

    private static func makeInference(_ configuration: GatewayConfiguration,
                                      models: [GatewayConfiguration.LocalModelSettings]) throws -> LocalInference {
        var limits = InferenceScheduler.Limits()
        limits.slots = configuration.inference.slots
        limits.maxQueued = configuration.inference.maxQueued
        limits.promptChunk = configuration.inference.promptChunk
        limits.promptChunkWhileDecoding = configuration.inference.promptChunkWhileDecoding
        limits.cacheBudgetBytes = configuration.inference.kvCacheMB.map { $0 << 20 }
        return try LocalInference(models: specs(models), threads: configuration.inference.threads, limits: limits)
    }

    /// Serves exactly `models` from now on, without a restart: loads what is new or changed while the old
    /// models keep answering, then swaps them in; requests already running finish on the model they started
    /// on. On any error nothing changes. Returns one line saying what changed. Call from one thread at a time
    /// (the CLI calls it on SIGHUP).
    public func reloadLocalModels(_ models: [GatewayConfiguration.LocalModelSettings]) throws -> String {
        let summary: String
        let facade: LocalInference
        if let current = inference {
            let report: LocalInference.Reload
            do {
                report = try current.reload(Self.specs(models))
            } catch {
                throw ConfigurationError("local_models: \(error)")
            }
            facade = current
            summary = "added [\(report.added.joined(separator: ", "))], replaced [\(report.replaced.joined(separator: ", "))], "
                + "removed [\(report.removed.joined(separator: ", "))], unchanged [\(report.unchanged.joined(separator: ", "))]"
        } else {
            guard !models.isEmpty else { return "no local models before or after" }
            do {
                facade = try Self.makeInference(configuration, models: models)
            } catch {
                throw ConfigurationError("local_models: \(error)")
            }
            summary = "added [\(models.map(\.name).joined(separator: ", "))]"
        }
        gateway.setLocalModels(LocalModelAdapter.entries(for: facade), inference: facade)
        return summary
    }

    /// Applies a configuration read again (SIGHUP): its local models (as `reloadLocalModels`) and its traffic
    /// policies, whose targets must be among those models or the routes running now (routes change only at a
    /// restart). Checks everything first; on any error nothing changes. Returns what changed, one line each.
    public func reload(_ settings: GatewayConfiguration) throws -> [String] {
        try reloading.withLock { _ in try reloadNow(settings) }
    }

    private func reloadNow(_ settings: GatewayConfiguration) throws -> [String] {
        var next = configuration
        next.localModels = settings.localModels
        next.policies = settings.policies
        try next.validatePoliciesAndTargets()
        let models = try reloadLocalModels(settings.localModels)
        policies.adopt(settings.policies)
        // The log's size cap: raising it (or lifting it) lets a writer stopped by the cap write again at once.
        log.setMaxSize(bytes: settings.log.maxSizeMB.map { Int64($0) << 20 })
        // The splits in force after the reload (a promotion can outlive an unchanged configuration).
        let inForce = gateway.policiesInForce
        let policies = inForce.isEmpty ? "none"
            : inForce.map { p in "\(p.model) → " + PolicySplit.describe(p.variants) }.joined(separator: "; ")
        let cap = settings.log.maxSizeMB.map { "\($0) MiB" } ?? "none"
        return ["local models: \(models)", "policies: \(policies)", "log size cap: \(cap)"]
    }

    /// Starts accepting; returns the URL clients should use.
    @discardableResult
    public func start() throws -> String {
        do {
            try http.start()
        } catch {
            http.shutdown(gracePeriod: 0)  // releases the never-started loops first, so the clients can close
            upstreams.shutdown()
            inference?.shutdown()
            log.close()
            throw error
        }
        let address = try ListenAddress(parsing: configuration.server.listen)
        let host = address.host.contains(":") ? "[\(address.host)]" : address.host
        policies.start()
        keySync.start()
        driftWatch?.start()
        dashboardJob.start()
        return "http://\(host):\(http.port)"
    }

    public var port: UInt16 { http.port }

    /// The HTTP event loops (each also runs its upstream client).
    public var eventLoops: [HTTPEventLoop] { http.eventLoops }

    /// Client connections open now.
    public var openConnections: Int { http.openConnectionCount }

    /// Graceful stop: no new connections, in-flight requests and streams get `server.shutdown_grace` seconds,
    /// then the upstream client stops and the log is flushed and closed. Blocks until all of that is done.
    public func shutdown() {
        policies.shutdown()
        keySync.shutdown()
        driftWatch?.shutdown()
        dashboardJob.shutdown()
        http.shutdown(gracePeriod: configuration.server.shutdownGrace)
        upstreams.shutdown()
        // Generations still running after the grace period end with an error (their clients are gone).
        inference?.shutdown()
        log.close()
    }
}
