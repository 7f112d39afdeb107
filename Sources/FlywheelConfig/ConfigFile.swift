import Foundation

/// The YAML file's shape, decoded as is and then resolved into a `GatewayConfiguration`.
/// Kept apart so the runtime configuration never carries `*_env` indirections.
struct ConfigFile: Decodable {
    var server: ServerSection?
    var auth: AuthSection?
    var log: LogSection?
    var feedback: FeedbackSection?
    var upstreams: [UpstreamSection]?
    var upstream_tls: UpstreamTLSSection?
    var routes: [RouteSection]?
    var prices: [String: PriceSection]?
    var local_models: [LocalModelSection]?
    var inference: InferenceSection?
    var policies: [PolicySection]?
    var drift: DriftSection?

    struct DriftSection: Decodable {
        var baseline: String?
        var baseline_window: String?
        var window: String?
        var interval: Double?
        var model: String?
        var alpha: Double?
        var sample: Int?
        var webhook: String?
        var thresholds: [String: Double]?
        var local_model: String?
    }

    struct PolicySection: Decodable {
        var model: String
        var variants: [VariantSection]
        var sticky: StickySection?
        var fallback: [String]?
        var first_token_budget: Double?
        var allow_override: Bool?
        var shadow: ShadowSection?
        var rollout: RolloutSection?
    }
    struct RolloutSection: Decodable {
        var target: String?
        var steps: [Double]?
        var step_seconds: Double?
        var min_requests: Int?
        var window_seconds: Double?
        var check_seconds: Double?
        var max_acceptance_drop: Double?
        var min_acceptance: Double?
        var min_feedback: Int?
        var max_error_rate: Double?
        var max_p95_latency_ms: Double?
        var min_eval_win_rate: Double?
        var webhook: String?
    }
    struct VariantSection: Decodable { var target: String; var weight: Double? }
    struct ShadowSection: Decodable { var target: String; var rate: Double?; var max_concurrent: Int? }
    /// `sticky: user`, `sticky: [user, episode]` or `sticky: none`.
    struct StickySection: Decodable {
        var keys: [String]
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let one = try? container.decode(String.self) { keys = [one] } else { keys = try container.decode([String].self) }
        }
    }

    struct LocalModelSection: Decodable {
        var name: String
        var path: String
        var context_length: Int?
        var chat_template: String?
        var chat_template_file: String?
        var retention_days: RetentionPeriod?
    }
    struct InferenceSection: Decodable {
        var threads: Int?
        var slots: Int?
        var max_queued: Int?
        var prompt_chunk: Int?
        var prompt_chunk_while_decoding: Int?
        var max_tokens_limit: Int?
        var kv_cache_mb: Int?
    }

    struct ServerSection: Decodable {
        var listen: String?
        var event_loops: Int?
        var max_body_bytes: Int?
        var max_header_bytes: Int?
        var max_connections: Int?
        var request_timeout: Double?
        var idle_timeout: Double?
        var write_timeout: Double?
        var shutdown_grace: Double?
        var max_response_bytes: Int?
        var max_buffered_body_bytes: Int?
        var log_level: String?
        var log_format: String?
        var access_log: AccessLogSection?
        var tls: TLSSection?
    }
    /// `access_log: true` (the daemon's output), `false`, or a file path.
    struct AccessLogSection: Decodable {
        var destination: String?
        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let on = try? container.decode(Bool.self) {
                destination = on ? "-" : nil
            } else {
                destination = try container.decode(String.self)
            }
        }
    }
    struct TLSSection: Decodable {
        var cert_file: String?
        var key_file: String?
        var client_ca_file: String?
        var client_auth: String?
        var handshake_timeout: Double?
    }
    struct AuthSection: Decodable {
        var keys: [KeySection]?
        var admin_key: String?
        var admin_key_env: String?
        var metrics_require_admin: Bool?
        var allow_open: Bool?
    }
    struct KeySection: Decodable { var id: String; var key: String?; var key_env: String? }
    struct LogSection: Decodable {
        var path: String?
        var queue_capacity: Int?
        var batch_size: Int?
        var flush_interval: Double?
        var cache_mb: Int?
        var max_size_mb: Int?
        var feedback_durability: String?
        var retention_days: RetentionPeriod?
        var retention_days_with_feedback: RetentionPeriod?
        var prune_interval: Double?
        var prune_batch_size: Int?
        var redact: String?
    }
    struct FeedbackSection: Decodable {
        var webhook_secret: String?
        var webhook_secret_env: String?
        var max_body_bytes: Int?
        var signature_tolerance: Double?
        var wait_timeout: Double?
        var source_weights: [String: Double]?
    }
    struct TimeoutsSection: Decodable { var connect: Double?; var first_byte: Double?; var total: Double?; var idle: Double? }
    struct RetriesSection: Decodable { var max: Int?; var initial_backoff: Double?; var max_backoff: Double? }
    struct UpstreamSection: Decodable {
        var name: String
        var base_url: String
        var api_key: String?
        var api_key_env: String?
        var headers: [String: String]?
        var timeouts: TimeoutsSection?
        var retries: RetriesSection?
    }
    struct UpstreamTLSSection: Decodable { var ca_bundle: String?; var verify: Bool? }
    struct RouteSection: Decodable {
        var model: String
        var upstreams: [String]?
        var upstream: String?
        var upstream_model: String?
        var name: String?
        var retention_days: RetentionPeriod?
    }
    struct PriceSection: Decodable { var input: Double; var output: Double }

    /// `readOnly`: a tool that only reads the file (prices, policies) does not need its secrets; environment
    /// variables that are not set resolve to a placeholder instead of an error.
    func resolve(environment: [String: String], source: String, readOnly: Bool = false) throws -> GatewayConfiguration {
        let secret = { (literal: String?, env: String?, what: String) throws -> String? in
            try Self.secret(literal: literal, env: env, environment: environment, what: what, placeholderWhenUnset: readOnly)
        }
        var c = GatewayConfiguration()
        if let s = server {
            c.server.listen = s.listen ?? c.server.listen
            c.server.eventLoops = s.event_loops
            c.server.maxBodyBytes = s.max_body_bytes ?? c.server.maxBodyBytes
            c.server.maxHeaderBytes = s.max_header_bytes ?? c.server.maxHeaderBytes
            c.server.maxConnections = s.max_connections ?? c.server.maxConnections
            c.server.requestTimeout = s.request_timeout ?? c.server.requestTimeout
            c.server.idleTimeout = s.idle_timeout ?? c.server.idleTimeout
            c.server.writeTimeout = s.write_timeout ?? c.server.writeTimeout
            c.server.shutdownGrace = s.shutdown_grace ?? c.server.shutdownGrace
            c.server.maxResponseBytes = s.max_response_bytes ?? c.server.maxResponseBytes
            c.server.maxBufferedBodyBytes = s.max_buffered_body_bytes ?? c.server.maxBufferedBodyBytes
            c.server.logLevel = s.log_level ?? c.server.logLevel
            c.server.logFormat = s.log_format ?? c.server.logFormat
            c.server.accessLog = s.access_log?.destination
            if let t = s.tls {
                var tls = GatewayConfiguration.TLS(certFile: t.cert_file ?? "", keyFile: t.key_file ?? "")
                tls.clientCAFile = t.client_ca_file
                if let mode = t.client_auth {
                    guard let parsed = GatewayConfiguration.TLS.ClientAuth(rawValue: mode) else {
                        throw ConfigurationError("\(source): server.tls.client_auth must be none, optional or require (got '\(mode)')")
                    }
                    tls.clientAuth = parsed
                }
                tls.handshakeTimeout = t.handshake_timeout ?? tls.handshakeTimeout
                c.server.tls = tls
            }
        }
        for k in auth?.keys ?? [] {
            let key = try secret(k.key, k.key_env, "auth.keys.\(k.id)")
            guard let key else { throw ConfigurationError("\(source): auth.keys.\(k.id) needs key or key_env") }
            c.auth.keys.append(.init(id: k.id, key: key))
        }
        c.auth.adminKey = try secret(auth?.admin_key, auth?.admin_key_env, "auth.admin_key")
        c.auth.metricsRequireAdmin = auth?.metrics_require_admin ?? false
        c.auth.allowOpen = auth?.allow_open ?? false
        if let l = log {
            c.log.path = l.path ?? c.log.path
            c.log.queueCapacity = l.queue_capacity ?? c.log.queueCapacity
            c.log.batchSize = l.batch_size ?? c.log.batchSize
            c.log.flushInterval = l.flush_interval ?? c.log.flushInterval
            c.log.cacheMB = l.cache_mb ?? c.log.cacheMB
            c.log.maxSizeMB = l.max_size_mb
            c.log.feedbackDurability = l.feedback_durability ?? c.log.feedbackDurability
            c.log.retentionDays = l.retention_days ?? c.log.retentionDays
            c.log.retentionDaysWithFeedback = l.retention_days_with_feedback
            c.log.pruneInterval = l.prune_interval ?? c.log.pruneInterval
            c.log.pruneBatchSize = l.prune_batch_size ?? c.log.pruneBatchSize
            if let r = l.redact {
                guard let mode = LogRedaction(rawValue: r) else {
                    throw ConfigurationError("\(source): log.redact must be one of \(LogRedaction.allCases.map(\.rawValue).joined(separator: ", ")), got '\(r.prefix(64))'")
                }
                c.log.redact = mode
            }
        }
        if let f = feedback {
            c.feedback.webhookSecret = try secret(f.webhook_secret, f.webhook_secret_env, "feedback.webhook_secret")
            c.feedback.maxBodyBytes = f.max_body_bytes ?? c.feedback.maxBodyBytes
            c.feedback.signatureTolerance = f.signature_tolerance ?? c.feedback.signatureTolerance
            c.feedback.waitTimeout = f.wait_timeout ?? c.feedback.waitTimeout
            c.feedback.sourceWeights = f.source_weights ?? [:]
        }
        for u in upstreams ?? [] {
            var up = GatewayConfiguration.Upstream(name: u.name, baseURL: u.base_url)
            // With neither key given, the upstream uses OPENAI_API_KEY, as the SDKs do.
            up.apiKey = try secret(u.api_key, u.api_key_env, "upstreams.\(u.name).api_key")
                ?? (u.api_key_env == nil ? environment["OPENAI_API_KEY"] : nil)
            up.headers = u.headers ?? [:]
            up.connectTimeout = u.timeouts?.connect ?? up.connectTimeout
            up.firstByteTimeout = u.timeouts?.first_byte ?? up.firstByteTimeout
            up.totalTimeout = u.timeouts?.total ?? up.totalTimeout
            up.idleTimeout = u.timeouts?.idle ?? up.idleTimeout
            up.maxRetries = u.retries?.max ?? up.maxRetries
            up.initialBackoff = u.retries?.initial_backoff ?? up.initialBackoff
            up.maxBackoff = u.retries?.max_backoff ?? up.maxBackoff
            c.upstreams.append(up)
        }
        c.upstreamTLS.caBundle = upstream_tls?.ca_bundle
        c.upstreamTLS.verify = upstream_tls?.verify ?? true
        for (i, r) in (routes ?? []).enumerated() {
            let names = r.upstreams ?? r.upstream.map { [$0] } ?? []
            guard !names.isEmpty else { throw ConfigurationError("\(source): routes[\(i)] (\(r.model)) needs upstreams") }
            c.routes.append(.init(model: r.model, upstreams: names, upstreamModel: r.upstream_model, name: r.name, retentionDays: r.retention_days))
        }
        for m in local_models ?? [] {
            var template = m.chat_template
            if let file = m.chat_template_file {
                guard template == nil else {
                    throw ConfigurationError("\(source): local_models.\(m.name): give chat_template or chat_template_file, not both")
                }
                do {
                    template = try String(contentsOfFile: file, encoding: .utf8)
                } catch {
                    throw ConfigurationError("\(source): local_models.\(m.name).chat_template_file: cannot read \(file)")
                }
            }
            var local = GatewayConfiguration.LocalModelSettings(name: m.name, path: m.path, contextLength: m.context_length, chatTemplate: template)
            local.retentionDays = m.retention_days
            c.localModels.append(local)
        }
        if let i = inference {
            c.inference.threads = i.threads
            c.inference.slots = i.slots ?? c.inference.slots
            c.inference.maxQueued = i.max_queued ?? c.inference.maxQueued
            c.inference.promptChunk = i.prompt_chunk ?? c.inference.promptChunk
            c.inference.promptChunkWhileDecoding = i.prompt_chunk_while_decoding ?? min(c.inference.promptChunkWhileDecoding, c.inference.promptChunk)
            c.inference.maxTokensLimit = i.max_tokens_limit ?? c.inference.maxTokensLimit
            c.inference.kvCacheMB = i.kv_cache_mb
        }
        for (model, p) in prices ?? [:] {
            c.prices[model] = .init(input: p.input, output: p.output)
        }
        if let d = drift {
            var watch = GatewayConfiguration.DriftWatch()
            watch.baseline = d.baseline
            watch.baselineWindow = d.baseline_window
            watch.window = d.window ?? watch.window
            watch.interval = d.interval ?? watch.interval
            watch.model = d.model
            watch.alpha = d.alpha ?? watch.alpha
            watch.sample = d.sample ?? watch.sample
            watch.webhook = d.webhook
            watch.thresholds = d.thresholds ?? [:]
            watch.localModel = d.local_model
            c.drift = watch
        }
        for (i, p) in (policies ?? []).enumerated() {
            var policy = GatewayConfiguration.TrafficPolicy(model: p.model, variants: p.variants.map { .init(target: $0.target, weight: $0.weight ?? 1) })
            if let sticky = p.sticky {
                if sticky.keys == ["none"] {
                    policy.sticky = []
                } else if sticky.keys.contains("none") {
                    throw ConfigurationError("\(source): policies[\(i)].sticky: 'none' stands alone (sticky: none)")
                } else {
                    policy.sticky = try sticky.keys.map { key in
                        guard let k = GatewayConfiguration.TrafficPolicy.StickyKey(rawValue: key) else {
                            throw ConfigurationError("\(source): policies[\(i)].sticky: '\(key)' is not one of user, episode, tag, none")
                        }
                        return k
                    }
                }
            }
            policy.fallback = p.fallback ?? []
            policy.firstTokenBudget = p.first_token_budget
            policy.allowOverride = p.allow_override ?? true
            if let s = p.shadow {
                policy.shadow = .init(target: s.target, rate: s.rate ?? 1, maxConcurrent: s.max_concurrent ?? 2)
            }
            if let r = p.rollout {
                var rollout = GatewayConfiguration.TrafficPolicy.Rollout()
                rollout.target = r.target
                rollout.steps = r.steps ?? rollout.steps
                rollout.stepSeconds = r.step_seconds ?? rollout.stepSeconds
                rollout.minRequests = r.min_requests ?? rollout.minRequests
                rollout.windowSeconds = r.window_seconds
                rollout.checkSeconds = r.check_seconds ?? rollout.checkSeconds
                rollout.maxAcceptanceDrop = r.max_acceptance_drop ?? rollout.maxAcceptanceDrop
                rollout.minAcceptance = r.min_acceptance
                rollout.minFeedback = r.min_feedback ?? rollout.minFeedback
                rollout.maxErrorRate = r.max_error_rate ?? rollout.maxErrorRate
                rollout.maxP95LatencyMillis = r.max_p95_latency_ms
                rollout.minEvalWinRate = r.min_eval_win_rate
                rollout.webhook = r.webhook
                policy.rollout = rollout
            }
            c.policies.append(policy)
        }
        return c
    }

    /// A literal value, or the named environment variable, which must then be set.
    static func secret(literal: String?, env: String?, environment: [String: String], what: String,
                       placeholderWhenUnset: Bool = false) throws -> String? {
        if literal != nil && env != nil {
            throw ConfigurationError("\(what): give the secret or the environment variable that holds it, not both")
        }
        if let literal { return literal }
        guard let env else { return nil }
        guard let value = environment[env] else {
            if placeholderWhenUnset { return "<\(env) unset>" }
            throw ConfigurationError("\(what): environment variable \(env) is not set")
        }
        guard !value.isEmpty else {
            if placeholderWhenUnset { return "<\(env) empty>" }
            throw ConfigurationError("\(what): environment variable \(env) is empty")
        }
        return value
    }

    /// A decoding error as one line naming the YAML path.
    static func describe(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingPrefix(".").description
        }
        switch error {
        case .keyNotFound(let key, let ctx): return "missing key '\(key.stringValue)' at \(path(ctx.codingPath).isEmpty ? "top level" : path(ctx.codingPath))"
        case .typeMismatch(_, let ctx): return "wrong type at \(path(ctx.codingPath)): \(ctx.debugDescription)"
        case .valueNotFound(_, let ctx): return "missing value at \(path(ctx.codingPath))"
        case .dataCorrupted(let ctx): return "invalid YAML at \(path(ctx.codingPath)): \(ctx.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}
