import FlywheelConfig
import Foundation
import FlywheelEngine
import FlywheelGateway
import FlywheelHTTP
import FlywheelLoop
import FlywheelOutput
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// The daemon assembled: the log writer, the local models, the per-loop upstream clients, the gateway and the
/// HTTP server, started and stopped in the order that loses nothing (stop accepting, drain requests, stop
/// upstreams, stop inference, flush the log). The one place that knows every part; the CLI only calls it.
public final class Daemon: Sendable {
    /// The configuration in force: as started, then as each successful reload left it (settings that need a
    /// restart keep their start-up values).
    public var configuration: GatewayConfiguration { current.withLock { $0 } }
    private let current: Mutex<GatewayConfiguration>
    public let gateway: Gateway
    /// Where the daemon says what it does (and the access log, when on).
    public let output: DaemonOutput
    /// Reads the configuration again for a reload (the file, with the command line's flags on top).
    private let source: (@Sendable () throws -> GatewayConfiguration)?
    /// One reload at a time (SIGHUP and `POST /admin/reload` may race).
    private let reloading = Mutex<Void>(())
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
    /// What the start-up says about authentication.
    public let authSummary: String
    /// Retention: prune passes on the log writer, when some retention is configured and the log can prune.
    private let retentionJob: RetentionJob?
    /// The facade running local models, as the gateway holds it: created at start when some are configured, or
    /// by the first reload that adds one.
    private var inference: LocalInference? { gateway.inference }
    /// The local models served now, in configuration order.
    public var localModels: [LocalModel] { inference?.models ?? [] }
    /// How local models run, for the start-up line ("kernels avx2 (weight rows in groups of 4), 2 threads"); nil
    /// without local models.
    public var localInferenceSummary: String? {
        inference.map { "kernels \($0.kernels), \($0.threadCount) thread\($0.threadCount == 1 ? "" : "s")" }
    }

    /// A line from a part below the daemon that words its own ("flywheel: [warning: ]..."; the log writer's
    /// storage reports), said on the process's output at the level it names.
    static func say(_ line: String, to output: DaemonOutput = .standardError) {
        var text = Substring(line)
        if text.hasPrefix("flywheel: ") { text = text.dropFirst("flywheel: ".count) }
        if text.hasPrefix("warning: ") {
            output.warn(String(text.dropFirst("warning: ".count)))
        } else {
            output.info(String(text))
        }
    }

    /// Opens the log the configuration names: SQLite at `log.path`, redacting rows as `log.redact` says.
    public static func openLog(_ configuration: GatewayConfiguration) throws -> any LogSink {
        try openLog(configuration, redactor: configuration.log.redact == .pii ? LogRedactor() : nil)
    }

    static func openLog(_ configuration: GatewayConfiguration, redactor: LogRedactor?) throws -> any LogSink {
        var rewrite: (@Sendable (inout RequestRecord) -> Void)?
        if let redactor { rewrite = { (record: inout RequestRecord) in redactor.redact(&record) } }
        do {
            return try SQLiteLogWriter(path: configuration.log.path, capacity: configuration.log.queueCapacity,
                                       maxBatch: configuration.log.batchSize, flushInterval: configuration.log.flushInterval,
                                       cacheKiB: configuration.log.cacheMB << 10,
                                       feedbackDurability: FeedbackDurability(rawValue: configuration.log.feedbackDurability) ?? .full,
                                       maxSizeBytes: configuration.log.maxSizeMB.map { Int64($0) << 20 },
                                       report: { Self.say($0) }, rewrite: rewrite)
        } catch {
            throw ConfigurationError("cannot open the log database \(configuration.log.path): \(error)")
        }
    }

    /// Builds the daemon; loads every configured local model first (mapping the files), so a bad
    /// model file fails start-up with a message naming it. `source` reads the configuration again for `reload()`
    /// (nil: only `reload(_:)` with a configuration in hand). `openLog` opens the log sink (tests wrap it).
    public init(configuration: GatewayConfiguration, output: DaemonOutput = .standardError,
                openLog: ((GatewayConfiguration) throws -> any LogSink)? = nil,
                source: (@Sendable () throws -> GatewayConfiguration)? = nil) throws {
        try configuration.validate()
        try configuration.checkPolicyTargets()
        if let drift = configuration.drift { try DriftWatch.checkRanges(drift) }
        self.current = Mutex(configuration)
        self.output = output
        self.source = source
        try Self.configureOutput(output, configuration)
        let address = try ListenAddress(parsing: configuration.server.listen)
        // The certificate and key are read before anything else opens, so a bad file fails start-up alone.
        let tls = try configuration.server.tls.map(Self.makeTLSContext)
        let redactor = configuration.log.redact == .pii ? LogRedactor() : nil
        let log = try openLog?(configuration) ?? Self.openLog(configuration, redactor: redactor)
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
        let keySync = KeySync(gateway: gateway, path: configuration.log.path) { output.log($0, $1) }
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
        http.limits = Self.httpLimits(configuration)
        // Feedback's body limit as the configuration in force says (it can change with a reload).
        let defaultFeedbackLimit = configuration.feedback.maxBodyBytes
        http.bodyLimit = { [weak gateway] method, path in
            Gateway.bodyLimit(feedbackMaxBytes: gateway?.configuration.feedback.maxBodyBytes ?? defaultFeedbackLimit)(method, path)
        }
        http.tls = tls
        if let settings = configuration.server.tls { http.tlsHandshakeTimeout = settings.handshakeTimeout }
        http.errorRenderer = { status, message in
            OpenAIError.forHTTPStatus(status, message: message).response(requestID: RequestID.newUUIDv7())
        }
        http.accessObserver = { [output] record in output.access(Self.accessFields(record)) }
        http.report = { [output] line in output.warn(line) }
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
        if server.isTLS {
            gateway.setTLSCounter { [weak server] in (server?.tlsSessionCount ?? 0, server?.tlsHandshakeFailureCount ?? 0) }
        }
        self.gateway = gateway
        self.http = server
        self.upstreams = upstreams
        self.log = log
        self.policies = PolicySync(gateway: gateway, path: configuration.log.path) { output.log($0, $1) }
        self.driftWatch = configuration.drift.map { settings in
            DriftWatch(settings: settings, path: configuration.log.path, gateway: gateway,
                       tokenizer: { [weak gateway] in settings.localModel.flatMap { gateway?.localTokenizer(named: $0) } },
                       say: { output.log($0, $1) })
        }
        self.dashboardJob = DashboardJob(gateway: gateway, configuration: configuration)
        self.keySync = keySync
        self.retentionJob = (log as? any LogPruning).map { RetentionJob(log: $0, configuration: configuration, metrics: gateway.metrics) { Self.say($0) } }
        if let redactor { gateway.metrics.setRedactionCounts { redactor.counts } }
        policies.adopt(configuration.policies)
        // `POST /admin/reload` runs the reload SIGHUP runs (on a queue of its own, never an event loop).
        if source != nil {
            gateway.setReloader { [weak self] in
                guard let self else { return [] }
                let result = self.reload()
                if let error = result.error { throw ConfigurationError(error) }
                return result.applied + result.needRestart.map { "needs a restart, still the old value: \($0)" }
            }
        }
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

    /// The HTTP server's limits as the configuration gives them.
    static func httpLimits(_ c: GatewayConfiguration) -> HTTPServerLimits {
        HTTPServerLimits(maxHeaderBytes: c.server.maxHeaderBytes, maxBodyBytes: c.server.maxBodyBytes,
                         maxBufferedBodyBytes: c.server.maxBufferedBodyBytes, maxConnections: c.server.maxConnections,
                         requestTimeout: c.server.requestTimeout, idleTimeout: c.server.idleTimeout,
                         writeTimeout: c.server.writeTimeout)
    }

    /// Level, format and access log as `c` says; throws (changing nothing) when the access log cannot be opened.
    static func configureOutput(_ output: DaemonOutput, _ c: GatewayConfiguration) throws {
        do {
            try output.setAccessLog(c.server.accessLog)
        } catch {
            throw ConfigurationError("server.access_log: \(error)")
        }
        output.configure(level: LogLevel(name: c.server.logLevel) ?? .info, format: LogFormat(rawValue: c.server.logFormat) ?? .text)
    }

    /// One access-log line's fields: no header value, no query string, no body.
    static func accessFields(_ r: HTTPAccessRecord) -> [(String, String)] {
        var fields: [(String, String)] = [
            ("remote", r.remoteAddress), ("method", r.method), ("path", r.path), ("status", String(r.status)),
            ("bytes", String(r.bodyBytes)), ("duration_ms", String(format: "%.3f", Double(r.durationNanos) / 1e6)),
            ("request_id", r.requestID ?? "-"),
        ]
        fields += r.notes
        if r.ending != .completed { fields.append(("ending", r.ending.rawValue)) }
        return fields
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

    /// The reload path of `SIGHUP` and `POST /admin/reload`: reads the configuration again (`source`), checks
    /// it whole, loads new local models, then applies everything in one step per part: routes and upstreams,
    /// client keys, webhook secret, prices and request limits (one `GatewaySettings` swap), the HTTP server's
    /// limits, local models, policies, output level, format and access log. A request keeps the settings it
    /// arrived with; no connection is dropped. A bad configuration (YAML, validation, a model file) changes
    /// nothing. Says what happened on the daemon's output and returns it. Blocks while models load: call it
    /// off the event loops.
    public func reload() -> ReloadResult {
        guard let source else {
            return ReloadResult(error: "this daemon was started without a configuration source to read again")
        }
        let settings: GatewayConfiguration
        do {
            settings = try source()
        } catch {
            return report(ReloadResult(error: "\(error)"))
        }
        return reload(settings)
    }

    /// `reload()` with the configuration already read.
    public func reload(_ settings: GatewayConfiguration) -> ReloadResult {
        report(reloading.withLock { _ in apply(settings) })
    }

    private func report(_ result: ReloadResult) -> ReloadResult {
        if let error = result.error {
            output.error("reload failed, still serving the previous configuration: \(error)")
            return result
        }
        for line in result.applied { output.info("reloaded \(line)") }
        for line in result.needRestart { output.warn("changed in the file but needs a restart, still using the old value: \(line)") }
        output.info("reloaded", [("changes", String(result.applied.count)), ("need_restart", String(result.needRestart.count))])
        return result
    }

    private func apply(_ read: GatewayConfiguration) -> ReloadResult {
        let old = configuration
        let next = read.keepingRestartOnlySettings(of: old)
        do {
            try next.validate()
            try next.checkPolicyTargets()
        } catch {
            return ReloadResult(error: "\(error)")
        }
        let changes = read.changes(from: old)
        // The access log first: a file that cannot be opened refuses the reload before anything changed.
        if next.server.accessLog != old.server.accessLog || next.server.accessLog.map({ $0 != "-" }) == true {
            do {
                try output.setAccessLog(next.server.accessLog)
            } catch {
                return ReloadResult(error: "server.access_log: \(error)")
            }
        }
        // TLS: the listener's files are read again below (`reloadTLS`); a certificate that does not load keeps the
        // previous one in force, says so, and does not hold up the rest of the reload.
        let models: String
        do {
            models = try reloadLocalModels(next.localModels)
        } catch {
            try? output.setAccessLog(old.server.accessLog)
            return ReloadResult(error: "\(error)")
        }
        // Nothing below can fail.
        gateway.apply(next)
        http.updateLimits(Self.httpLimits(next))
        policies.adopt(next.policies)
        // The log's size cap: raising it (or lifting it) lets a writer stopped by the cap write again at once.
        log.setMaxSize(bytes: next.log.maxSizeMB.map { Int64($0) << 20 })
        output.configure(level: LogLevel(name: next.server.logLevel) ?? .info, format: LogFormat(rawValue: next.server.logFormat) ?? .text)
        current.withLock { $0 = next }
        // Retention rules apply from the next pass (routes' and local models' own come with them).
        retentionJob?.adopt(next)
        // The splits in force after the reload (a promotion can outlive an unchanged configuration).
        let inForce = gateway.policiesInForce
        let policies = inForce.isEmpty ? "none"
            : inForce.map { p in "\(p.model) → " + PolicySplit.describe(p.variants) }.joined(separator: "; ")
        var result = ReloadResult()
        // The cap is said when it changed (the models and the splits in force are said every time).
        let cap = next.log.maxSizeMB == old.log.maxSizeMB ? nil : "log size cap: " + (next.log.maxSizeMB.map { "\($0) MiB" } ?? "none")
        result.applied = changes.applied + ["local models: \(models)", "policies: \(policies)"]
            + [cap, reloadTLS(read.server.tls)].compactMap { $0 }
        result.needRestart = changes.needRestart
        return result
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
        retentionJob?.start()
        return "\(http.isTLS ? "https" : "http")://\(host):\(http.port)"
    }

    // MARK: TLS on the listener

    /// Reads `server.tls`'s files into a server context; a `ConfigurationError` names the file and the problem.
    static func makeTLSContext(_ settings: GatewayConfiguration.TLS) throws -> TLSContext {
        let mode = TLSClientAuthentication(rawValue: settings.clientAuth.rawValue) ?? .require
        let files = TLSConfiguration(certificateFile: settings.certFile, privateKeyFile: settings.keyFile,
                                     clientCAFile: settings.clientCAFile, clientAuthentication: mode)
        do {
            return try TLSContext(files)
        } catch {
            throw ConfigurationError("server.tls: \(error)")
        }
    }

    /// The certificate in force, for the operator's start-up output (nil: plain HTTP).
    public var tlsCertificateSummary: String? { http.tlsContext?.certificateSummary }

    /// SIGHUP: reads the certificate, key and client CAs again (from `settings`, the configuration as read
    /// again) for connections accepted from now on; established ones keep theirs. A file that does not load
    /// leaves the previous context in force (and the rest of the reload goes ahead). TLS itself is switched on or
    /// off only at a restart. Returns one line for the operator saying which of these happened (nil: no TLS before
    /// or after, nothing to say). Part of `reload`, so SIGHUP and /admin/reload both do it.
    func reloadTLS(_ settings: GatewayConfiguration.TLS?) -> String? {
        guard http.isTLS else {
            return settings == nil ? nil : "tls: server.tls takes effect at the next start (this daemon serves plain HTTP)"
        }
        guard let settings else {
            return "tls: server.tls was removed; HTTPS goes on with the previous certificate until the next start"
        }
        do {
            try settings.validate()
            let context = try Self.makeTLSContext(settings)
            http.replaceTLSContext(context)
            return "tls certificate for new connections: \(context.certificateSummary)"
        } catch {
            return "tls: NOT reloaded, new connections keep the previous certificate: \(error)"
        }
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
        retentionJob?.shutdown()
        http.shutdown(gracePeriod: configuration.server.shutdownGrace)
        upstreams.shutdown()
        // Generations still running after the grace period end with an error (their clients are gone).
        inference?.shutdown()
        log.close()
        output.flush()
    }
}
