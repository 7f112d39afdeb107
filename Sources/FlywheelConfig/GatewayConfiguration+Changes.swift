/// What a reload changes: the settings that take effect at once, and those that wait for a restart.
public struct ConfigurationChanges: Sendable, Equatable {
    /// One line per changed section, applied now (names and numbers only: never a secret).
    public var applied: [String] = []
    /// One line per changed setting that only a restart applies; the daemon keeps the old value until then.
    public var needRestart: [String] = []

    public init() {}
}

/// What a reload did (`Daemon.reload()`, for `SIGHUP` and the admin endpoint alike): the changes applied, one line
/// each, the changed settings that wait for a restart, or why the configuration was refused. Here, below the
/// gateway, so an endpoint can render it without knowing the daemon.
public struct ReloadResult: Sendable, Equatable {
    public var applied: [String] = []
    public var needRestart: [String] = []
    /// Set when the configuration was refused; the one in force before stays, whole.
    public var error: String?
    public var succeeded: Bool { error == nil }

    public init(applied: [String] = [], needRestart: [String] = [], error: String? = nil) {
        self.applied = applied
        self.needRestart = needRestart
        self.error = error
    }
}

extension GatewayConfiguration {
    /// What differs between `old` and this configuration, outside `local_models` and `policies` (the daemon
    /// reports those itself, as it loads them). Upstream keys, client keys and the webhook secret are named,
    /// never shown.
    public func changes(from old: GatewayConfiguration) -> ConfigurationChanges {
        var c = ConfigurationChanges()
        func scalar<T: Equatable>(_ name: String, _ a: T, _ b: T, restart: Bool = false) {
            guard a != b else { return }
            let line = "\(name): \(a) → \(b)"
            if restart { c.needRestart.append(line) } else { c.applied.append(line) }
        }
        func optional<T: Equatable>(_ name: String, _ a: T?, _ b: T?, restart: Bool = false) {
            scalar(name, a.map { "\($0)" } ?? "unset", b.map { "\($0)" } ?? "unset", restart: restart)
        }
        // Take effect now.
        if old.routes != routes {
            c.applied.append("routes: [\(old.routes.map(Self.describe).joined(separator: ", "))] → [\(routes.map(Self.describe).joined(separator: ", "))]")
        }
        let names = Self.namedChanges(old.upstreams.map { ($0.name, $0) }, upstreams.map { ($0.name, $0) })
        if !names.isEmpty { c.applied.append("upstreams: \(names)") }
        let keys = Self.namedChanges(old.auth.keys.map { ($0.id, $0) }, auth.keys.map { ($0.id, $0) })
        if !keys.isEmpty { c.applied.append("auth.keys: \(keys)") }
        let prices = Self.namedChanges(old.prices.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                                       self.prices.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        if !prices.isEmpty { c.applied.append("prices: \(prices)") }
        switch (old.auth.adminKey, auth.adminKey) {
        case (nil, nil): break
        case (nil, _): c.applied.append("auth.admin_key: set")
        case (_, nil): c.applied.append("auth.admin_key: removed (admin endpoints answer loopback peers only)")
        case (let a, let b): if a != b { c.applied.append("auth.admin_key: changed") }
        }
        scalar("auth.metrics_require_admin", old.auth.metricsRequireAdmin, auth.metricsRequireAdmin)
        scalar("auth.allow_open", old.auth.allowOpen, auth.allowOpen, restart: true)
        switch (old.feedback.webhookSecret, feedback.webhookSecret) {
        case (nil, nil): break
        case (nil, _): c.applied.append("feedback.webhook_secret: set")
        case (_, nil): c.applied.append("feedback.webhook_secret: removed (feedback is checked with client keys)")
        case (let a, let b): if a != b { c.applied.append("feedback.webhook_secret: changed") }
        }
        scalar("feedback.max_body_bytes", old.feedback.maxBodyBytes, feedback.maxBodyBytes)
        scalar("feedback.signature_tolerance", old.feedback.signatureTolerance, feedback.signatureTolerance)
        scalar("feedback.wait_timeout", old.feedback.waitTimeout, feedback.waitTimeout)
        if old.feedback.sourceWeights != feedback.sourceWeights { c.applied.append("feedback.source_weights changed") }
        let s = server, o = old.server
        scalar("server.max_body_bytes", o.maxBodyBytes, s.maxBodyBytes)
        scalar("server.max_header_bytes", o.maxHeaderBytes, s.maxHeaderBytes)
        scalar("server.max_connections", o.maxConnections, s.maxConnections)
        scalar("server.max_buffered_body_bytes", o.maxBufferedBodyBytes, s.maxBufferedBodyBytes)
        scalar("server.max_response_bytes", o.maxResponseBytes, s.maxResponseBytes)
        scalar("server.request_timeout", o.requestTimeout, s.requestTimeout)
        scalar("server.idle_timeout", o.idleTimeout, s.idleTimeout)
        scalar("server.write_timeout", o.writeTimeout, s.writeTimeout)
        scalar("server.shutdown_grace", o.shutdownGrace, s.shutdownGrace)
        scalar("server.log_level", o.logLevel, s.logLevel)
        scalar("server.log_format", o.logFormat, s.logFormat)
        optional("server.access_log", o.accessLog, s.accessLog)
        scalar("inference.max_tokens_limit", old.inference.maxTokensLimit, inference.maxTokensLimit)
        // Wait for a restart.
        scalar("server.listen", o.listen, s.listen, restart: true)
        optional("server.event_loops", o.eventLoops, s.eventLoops, restart: true)
        // Retention and the size cap take effect now; the rest of `log` waits for a restart.
        scalar("log.retention_days", old.log.retentionDays, log.retentionDays)
        optional("log.retention_days_with_feedback", old.log.retentionDaysWithFeedback, log.retentionDaysWithFeedback)
        scalar("log.prune_batch_size", old.log.pruneBatchSize, log.pruneBatchSize)
        var oldLog = old.log, newLog = log
        oldLog.maxSizeMB = nil; newLog.maxSizeMB = nil
        oldLog.retentionDays = .forever; newLog.retentionDays = .forever
        oldLog.retentionDaysWithFeedback = nil; newLog.retentionDaysWithFeedback = nil
        oldLog.pruneBatchSize = 0; newLog.pruneBatchSize = 0
        if oldLog != newLog { c.needRestart.append("log (path, queue, batching, cache, feedback_durability, prune_interval, redact)") }
        var oldInference = old.inference, newInference = inference
        oldInference.maxTokensLimit = 0
        newInference.maxTokensLimit = 0
        if oldInference != newInference { c.needRestart.append("inference (threads, slots, queue, prompt chunks, kv_cache_mb)") }
        if old.upstreamTLS != upstreamTLS { c.needRestart.append("upstream_tls") }
        if old.drift != drift { c.needRestart.append("drift") }
        return c
    }

    /// This configuration with the settings only a restart applies (listen address, event loops, log, the
    /// engine's threads and slots, upstream TLS, the drift watch, `auth.allow_open`) taken from `running`: what a
    /// reload serves.
    public func keepingRestartOnlySettings(of running: GatewayConfiguration) -> GatewayConfiguration {
        var next = self
        next.server.listen = running.server.listen
        next.server.eventLoops = running.server.eventLoops
        let live = next.log
        next.log = running.log
        next.log.maxSizeMB = live.maxSizeMB
        next.log.retentionDays = live.retentionDays
        next.log.retentionDaysWithFeedback = live.retentionDaysWithFeedback
        next.log.pruneBatchSize = live.pruneBatchSize
        let maxTokens = next.inference.maxTokensLimit
        next.inference = running.inference
        next.inference.maxTokensLimit = maxTokens
        next.upstreamTLS = running.upstreamTLS
        next.drift = running.drift
        next.auth.allowOpen = running.auth.allowOpen
        return next
    }

    static func describe(_ route: Route) -> String {
        "\(route.model)→\(route.upstreams.joined(separator: "|"))" + (route.upstreamModel.map { " as \($0)" } ?? "")
    }

    /// "added [a], removed [b], changed [c]" for two lists of named values; "" when equal.
    static func namedChanges<T: Equatable>(_ old: [(String, T)], _ new: [(String, T)]) -> String {
        let before = Dictionary(old, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new, uniquingKeysWith: { a, _ in a })
        let added = new.map(\.0).filter { before[$0] == nil }
        let removed = old.map(\.0).filter { after[$0] == nil }
        let changed = new.map(\.0).filter { name in before[name].map { $0 != after[name]! } ?? false }
        var parts: [String] = []
        if !added.isEmpty { parts.append("added [\(added.joined(separator: ", "))]") }
        if !removed.isEmpty { parts.append("removed [\(removed.joined(separator: ", "))]") }
        if !changed.isEmpty { parts.append("changed [\(changed.joined(separator: ", "))]") }
        return parts.joined(separator: ", ")
    }
}
