import Foundation
import Yams

/// Everything the daemon needs to run, loaded from a YAML file and then overridden by command-line flags.
/// Field names mirror the YAML keys (snake_case there); see `config/flywheel.example.yaml`.
public struct GatewayConfiguration: Sendable, Equatable {
    public var server = Server()
    public var auth = Auth()
    public var log = Log()
    public var feedback = Feedback()
    public var upstreams: [Upstream] = []
    public var upstreamTLS = UpstreamTLS()
    public var routes: [Route] = []
    /// USD per one million tokens, by model name (requested or served).
    public var prices: [String: Price] = [:]
    /// GGUF models served in process by the engine (route `local`).
    public var localModels: [LocalModelSettings] = []
    /// How the engine runs local models.
    public var inference = Inference()
    /// Traffic policies by the model name apps send: splits between targets, fallbacks and shadows.
    public var policies: [TrafficPolicy] = []
    /// The drift check the daemon runs on a schedule, when configured.
    public var drift: DriftWatch? = nil

    /// `flywheel drift` in the background: its scores go to `/metrics`, a change of verdict to the daemon's
    /// output and the webhook.
    public struct DriftWatch: Sendable, Equatable {
        /// An export file the model was trained on, or a past window of the log (`SINCE..UNTIL`).
        public var baseline: String?
        public var baselineWindow: String?
        /// The recent traffic, `SINCE[..UNTIL]`.
        public var window = "1h"
        /// Seconds between checks.
        public var interval = 600.0
        public var model: String?
        /// A local model whose tokenizer adds the token unigram signal.
        public var localModel: String?
        public var alpha = 0.005
        public var sample = 2_000
        public var webhook: String?
        /// Thresholds by signal (`psi_warn`, `psi_alert`, `js_warn`, `js_alert`, `new_share_warn`, `new_share_alert`,
        /// `rate_warn`, `rate_alert`, `mmd_alert`); unset ones keep the defaults named in `DriftThresholds`.
        public var thresholds: [String: Double] = [:]

        public init() {}
    }

    /// The names `drift.thresholds` accepts.
    public static let driftThresholdNames: Set<String> = ["psi_warn", "psi_alert", "js_warn", "js_alert", "new_share_warn",
                                                          "new_share_alert", "rate_warn", "rate_alert", "mmd_alert"]

    public init() {}

    /// How requests for one model name are spread over targets: each target is a local model name or a model
    /// name the routes send upstream (never another policy).
    public struct TrafficPolicy: Sendable, Equatable {
        public struct Variant: Sendable, Equatable {
            public var target: String
            /// Relative share of the traffic (any non-negative numbers; they need not add up to 100).
            public var weight: Double
            public init(target: String, weight: Double) {
                self.target = target
                self.weight = weight
            }
        }
        /// What keeps one caller on one variant: the first of these the request carries.
        public enum StickyKey: String, Sendable, Equatable, CaseIterable {
            case user, episode, tag
        }
        public struct Shadow: Sendable, Equatable {
            public var target: String
            /// Share of the requests also run on the shadow target (0...1).
            public var rate: Double
            /// Shadow runs at once; beyond this a shadow run is skipped (shed), never queued.
            public var maxConcurrent: Int
            public init(target: String, rate: Double, maxConcurrent: Int = 2) {
                self.target = target
                self.rate = rate
                self.maxConcurrent = maxConcurrent
            }
        }

        /// The model name apps send.
        public var model: String
        /// Listed with the candidate first, so that raising its weight keeps every caller it already had.
        public var variants: [Variant]
        /// Empty: every request is drawn on its own.
        public var sticky: [StickyKey] = [.user, .episode]
        /// Targets tried in order when the chosen one fails before its first token.
        public var fallback: [String] = []
        /// Seconds a target may take to its first token before the next fallback answers instead.
        public var firstTokenBudget: Double? = nil
        /// Whether `x-flywheel-variant` on a request may choose the variant (for testing).
        public var allowOverride = true
        public var shadow: Shadow? = nil
        /// Raises one target's share step by step while guardrails hold; rolls it back when one fails.
        public var rollout: Rollout? = nil

        /// A progressive rollout: the daemon checks it every `checkSeconds`.
        public struct Rollout: Sendable, Equatable {
            /// The target rolled out; nil: the first variant.
            public var target: String?
            /// Shares in percent, rising.
            public var steps: [Double] = [5, 25, 50, 100]
            /// Seconds at a step (guardrails holding) before the next.
            public var stepSeconds: Double = 300
            /// The target's requests in the window before a step may advance or a guardrail be judged.
            public var minRequests = 50
            /// The window the guardrails look at, in seconds; nil: `stepSeconds`.
            public var windowSeconds: Double? = nil
            public var checkSeconds: Double = 10
            /// The target's acceptance rate may be at most this below the other variants'.
            public var maxAcceptanceDrop: Double? = 0.05
            /// The target's own acceptance rate may not fall below this (once it has `minFeedback` verdicts): a floor
            /// that needs no comparison group, so it still guards at 100%.
            public var minAcceptance: Double? = nil
            /// Feedback verdicts each side needs before acceptance is compared.
            public var minFeedback = 20
            public var maxErrorRate: Double? = 0.02
            public var maxP95LatencyMillis: Double? = nil
            /// The target's latest judged evaluation must have at least this win rate.
            public var minEvalWinRate: Double? = nil
            /// POSTed (JSON) on every step and rollback.
            public var webhook: String? = nil

            public init() {}
        }

        public init(model: String, variants: [Variant]) {
            self.model = model
            self.variants = variants
        }

        /// Every target the policy may send a request to.
        public var targets: [String] {
            var out: [String] = []
            for t in variants.map(\.target) + fallback + (shadow.map { [$0.target] } ?? []) where !out.contains(t) { out.append(t) }
            return out
        }
    }

    public struct LocalModelSettings: Sendable, Equatable {
        /// The `model` name requests use.
        public var name: String
        /// Path of the GGUF file (Q8_0, F16 or F32 weights).
        public var path: String
        /// Tokens per sequence (prompt plus completion); default: the model's own, at most 4096.
        public var contextLength: Int? = nil
        /// A Jinja chat template used instead of the file's `tokenizer.chat_template`.
        public var chatTemplate: String? = nil
        /// How long its requests are kept, instead of `log.retention_days`.
        public var retentionDays: RetentionPeriod? = nil

        public init(name: String, path: String, contextLength: Int? = nil, chatTemplate: String? = nil) {
            self.name = name
            self.path = path
            self.contextLength = contextLength
            self.chatTemplate = chatTemplate
        }
    }

    public struct Inference: Sendable, Equatable {
        /// Compute threads; default: the cores available to the process.
        public var threads: Int? = nil
        /// Generations evaluated at once (each holds a KV cache); others wait in the queue.
        public var slots = 2
        /// Generations that may wait for a slot; beyond this requests get 503 at once.
        public var maxQueued = 32
        /// Prompt tokens evaluated per step when no local generation is decoding.
        public var promptChunk = 128
        /// Prompt tokens per step while generations decode (at most `promptChunk`), so a new prompt holds up the
        /// streams' next tokens by a small piece at a time.
        public var promptChunkWhileDecoding = 32
        /// Upper bound on `max_tokens` (and the default when a request gives none).
        public var maxTokensLimit = 4096
        /// MiB of KV cache all local sequences together may hold; nil: no budget (caches still grow only as
        /// sequences do). A generation reserves its prompt plus max_tokens when it starts.
        public var kvCacheMB: Int? = nil
    }

    public struct Server: Sendable, Equatable {
        public var listen = "127.0.0.1:8080"
        public var eventLoops: Int? = nil
        public var maxBodyBytes = 16 << 20
        public var maxHeaderBytes = 16 << 10
        public var maxConnections = 4096
        public var requestTimeout = 30.0
        public var idleTimeout = 60.0
        public var writeTimeout = 60.0
        public var shutdownGrace = 30.0
        /// A buffered (non-stream) upstream response larger than this is refused with 502.
        public var maxResponseBytes = 64 << 20
        /// Request-body bytes being received across all connections at once; a new body that would go beyond
        /// it gets 503 with `Retry-After` (0 turns the budget off).
        public var maxBufferedBodyBytes = 256 << 20
        /// The daemon's output: `debug`, `info`, `warn` or `error` and up.
        public var logLevel = "info"
        /// `text` (time level message key=value) or `json` (one object per line).
        public var logFormat = "text"
        /// One line per request: nil off, "-" in the daemon's output, else a file appended to.
        public var accessLog: String? = nil
        /// HTTPS on the listener (`server.tls`); nil: plain HTTP.
        public var tls: TLS? = nil
    }

    /// `server.tls`: the listener's certificate and key, and optionally client certificates (mutual TLS). The files
    /// are read at start and again on SIGHUP.
    public struct TLS: Sendable, Equatable {
        public enum ClientAuth: String, Sendable, CaseIterable { case none, optional, require }
        public var certFile: String
        public var keyFile: String
        public var clientCAFile: String? = nil
        public var clientAuth = ClientAuth.none
        /// Seconds a client has to finish its TLS handshake.
        public var handshakeTimeout = 10.0

        public init(certFile: String, keyFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
        }
    }

    /// The names `server.log_level` and `server.log_format` accept.
    public static let logLevelNames = ["debug", "info", "warn", "error"]
    public static let logFormatNames = ["text", "json"]

    public struct Auth: Sendable, Equatable {
        /// When non-empty, clients must present one of these as `Authorization: Bearer <key>`.
        public var keys: [APIKey] = []
        /// The key of the admin endpoints (dashboard, `POST /admin/reload`, `/metrics` when `metricsRequireAdmin`);
        /// nil: they answer loopback peers only.
        public var adminKey: String? = nil
        /// `/metrics` takes the admin key too (needs `adminKey`).
        public var metricsRequireAdmin = false
        /// Listen on a non-loopback address even when no key exists (no `keys`, no virtual keys in the log).
        public var allowOpen = false
    }

    public struct APIKey: Sendable, Equatable {
        public var id: String
        public var key: String

        public init(id: String, key: String) {
            self.id = id
            self.key = key
        }
    }

    public struct Log: Sendable, Equatable {
        public var path = "flywheel.db"
        public var queueCapacity = 10_000
        public var batchSize = 1_000
        public var flushInterval = 0.05
        /// MiB of SQLite page cache for the log writer; it fills as the log grows.
        public var cacheMB = 32
        /// A cap on the database file in MiB (nil: none); reaching it is handled like a full disk.
        public var maxSizeMB: Int? = nil
        /// `full`: commits carrying feedback fsync the WAL before the 200 (survives power loss); `normal`: as
        /// request rows (survives a process crash; the last commits may be lost on power loss).
        public var feedbackDurability = "full"
        /// Requests older than this are pruned (routes and local models may override it).
        public var retentionDays: RetentionPeriod = .forever
        /// Rows with feedback (the training data) are kept this long when it is longer than their own
        /// retention; nil: as long as any other row.
        public var retentionDaysWithFeedback: RetentionPeriod? = nil
        /// Seconds between prune passes (the first runs at start).
        public var pruneInterval = 3_600.0
        /// Rows examined per prune transaction.
        public var pruneBatchSize = 2_000
        /// What is done to content before it is stored.
        public var redact: LogRedaction = .none
    }

    public struct Feedback: Sendable, Equatable {
        /// When set, `POST /v1/feedback` requires `x-flywheel-signature: sha256=<hex HMAC of the body>`.
        public var webhookSecret: String? = nil
        public var maxBodyBytes = 1 << 20
        /// Seconds a signed timestamp (`t=` in the signature header) may differ from the daemon's clock:
        /// replayed webhooks older than this are refused. Stripe's default is 300 s.
        public var signatureTolerance = 300.0
        /// Seconds a feedback request waits for its request's row (in flight, or queued behind a busy writer)
        /// before it gets 503 with `Retry-After`.
        public var waitTimeout = 10.0
        /// A reviewer weight per feedback source (`langfuse:quality`, `implicit:edit`, `helicone`, ...) for
        /// feedback sent without one (`flywheel corrections` ranks by it).
        public var sourceWeights: [String: Double] = [:]
    }

    public struct Upstream: Sendable, Equatable {
        public var name: String
        public var baseURL: String
        public var apiKey: String?
        public var headers: [String: String] = [:]
        public var connectTimeout = 10.0
        public var firstByteTimeout = 120.0
        public var totalTimeout = 600.0
        /// Longest silence of a response after its head (0: off).
        public var idleTimeout = 300.0
        public var maxRetries = 2
        public var initialBackoff = 0.2
        public var maxBackoff = 5.0
    }

    /// How upstream TLS certificates are checked (for every upstream).
    public struct UpstreamTLS: Sendable, Equatable {
        /// PEM bundle of CAs to trust instead of the system's (e.g. an internal CA).
        public var caBundle: String? = nil
        /// Never turn off outside a test: without verification anyone on the path can read the traffic.
        public var verify = true
    }

    public struct Route: Sendable, Equatable {
        /// An exact model name or a glob (`*` any run, `?` one character).
        public var model: String
        /// Upstream names in order: the first is primary, the rest are fallbacks.
        public var upstreams: [String]
        /// The model name sent upstream, when it differs from the requested one.
        public var upstreamModel: String?
        /// Name recorded in the log's `route` column; defaults to "upstream".
        public var name: String?
        /// How long the requests this route serves are kept, instead of `log.retention_days`.
        public var retentionDays: RetentionPeriod? = nil
    }

    /// USD per one million tokens.
    public struct Price: Sendable, Equatable {
        public var input: Double
        public var output: Double

        public init(input: Double, output: Double) {
            self.input = input
            self.output = output
        }

        /// What `promptTokens` in and `completionTokens` out cost at these prices, in USD.
        public func cost(promptTokens: Int, completionTokens: Int) -> Double {
            (Double(promptTokens) * input + Double(completionTokens) * output) / 1_000_000
        }
    }
}

/// A configuration problem, with the place it was found.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension GatewayConfiguration {
    /// Reads and validates a YAML configuration file. Environment references (`*_env` keys) are resolved
    /// against `environment`.
    /// `readOnly`: for tools that read the file but never use its secrets (`report`): unset secret variables are
    /// not an error.
    public static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            readOnly: Bool = false) throws -> GatewayConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError("cannot read config file \(path): \(error.localizedDescription)")
        }
        return try parse(yaml: text, source: path, environment: environment, readOnly: readOnly)
    }

    /// Parses YAML text; `source` names it in error messages.
    public static func parse(yaml: String, source: String = "config", environment: [String: String] = [:],
                             readOnly: Bool = false) throws -> GatewayConfiguration {
        let file: ConfigFile
        do {
            try ConfigKeyChecker.check(yaml: yaml, source: source)
            file = try YAMLDecoder().decode(ConfigFile.self, from: yaml)
        } catch let error as ConfigurationError {
            throw error
        } catch let error as DecodingError {
            throw ConfigurationError("\(source): \(ConfigFile.describe(error))")
        } catch {
            throw ConfigurationError("\(source): \(withoutQuotedLine("\(error)"))")
        }
        let config = try file.resolve(environment: environment, source: source, readOnly: readOnly)
        try config.validate()
        return config
    }

    /// A YAML syntax error without the offending line the parser quotes under it (and its caret): that line may
    /// hold a secret (`admin_key: ...`), and the message reaches the daemon's output and `POST /admin/reload`'s
    /// answer. The line and column stay.
    static func withoutQuotedLine(_ text: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.count >= 3, let caret = lines.last, caret.contains("^"), caret.allSatisfy({ $0 == " " || $0 == "^" }) {
            lines.removeLast(2)
        }
        return lines.joined(separator: " ").trimmingCharacters(in: .whitespaces)
    }

    /// Checks cross-references and ranges; throws the first problem found.
    public func validate() throws {
        var names = Set<String>()
        for u in upstreams {
            guard !u.name.isEmpty else { throw ConfigurationError("upstreams: an upstream has an empty name") }
            guard names.insert(u.name).inserted else { throw ConfigurationError("upstreams: duplicate name '\(u.name)'") }
            guard u.baseURL.hasPrefix("http://") || u.baseURL.hasPrefix("https://") else {
                throw ConfigurationError("upstreams.\(u.name).base_url must start with http:// or https://, got '\(u.baseURL)'")
            }
            guard u.maxRetries >= 0, u.maxRetries <= 10 else { throw ConfigurationError("upstreams.\(u.name).retries.max must be 0...10") }
            for (label, t) in [("connect", u.connectTimeout), ("first_byte", u.firstByteTimeout), ("total", u.totalTimeout)] where !(t > 0) {
                throw ConfigurationError("upstreams.\(u.name).timeouts.\(label) must be > 0")
            }
            guard u.idleTimeout >= 0, u.idleTimeout.isFinite else {
                throw ConfigurationError("upstreams.\(u.name).timeouts.idle must be >= 0 (0 turns it off)")
            }
        }
        if let bundle = upstreamTLS.caBundle, !FileManager.default.isReadableFile(atPath: bundle) {
            throw ConfigurationError("upstream_tls.ca_bundle: cannot read \(bundle)")
        }
        for (i, r) in routes.enumerated() {
            guard !r.model.isEmpty else { throw ConfigurationError("routes[\(i)]: model is empty") }
            guard !r.upstreams.isEmpty else { throw ConfigurationError("routes[\(i)] (\(r.model)): needs at least one upstream") }
            for name in r.upstreams where !names.contains(name) {
                throw ConfigurationError("routes[\(i)] (\(r.model)): unknown upstream '\(name)'")
            }
        }
        var localNames = Set<String>()
        for (i, m) in localModels.enumerated() {
            guard !m.name.isEmpty else { throw ConfigurationError("local_models[\(i)]: name is empty") }
            guard localNames.insert(m.name).inserted else { throw ConfigurationError("local_models: duplicate name '\(m.name)'") }
            guard !m.path.isEmpty else { throw ConfigurationError("local_models.\(m.name): path is empty") }
            if let c = m.contextLength, c < 16 || c > 1 << 20 {
                throw ConfigurationError("local_models.\(m.name).context_length must be 16...1048576")
            }
        }
        if let t = inference.threads, t < 1 || t > 256 { throw ConfigurationError("inference.threads must be 1...256") }
        guard inference.slots >= 1, inference.slots <= 64 else { throw ConfigurationError("inference.slots must be 1...64") }
        guard inference.maxQueued >= 0 else { throw ConfigurationError("inference.max_queued must not be negative") }
        guard inference.promptChunk >= 1 else { throw ConfigurationError("inference.prompt_chunk must be positive") }
        guard inference.promptChunkWhileDecoding >= 1, inference.promptChunkWhileDecoding <= inference.promptChunk else {
            throw ConfigurationError("inference.prompt_chunk_while_decoding must be 1...prompt_chunk")
        }
        guard inference.maxTokensLimit >= 1, inference.maxTokensLimit <= 1 << 24 else {
            throw ConfigurationError("inference.max_tokens_limit must be 1...16777216")
        }
        if let mb = inference.kvCacheMB, mb < 1 || mb > 1 << 24 { throw ConfigurationError("inference.kv_cache_mb must be 1...16777216") }
        guard server.maxBodyBytes > 0, server.maxHeaderBytes >= 1024, server.maxConnections > 0 else {
            throw ConfigurationError("server: max_body_bytes, max_header_bytes (>= 1024) and max_connections must be positive")
        }
        guard server.requestTimeout > 0, server.idleTimeout > 0, server.shutdownGrace >= 0 else {
            throw ConfigurationError("server: timeouts must be positive")
        }
        guard Self.logLevelNames.contains(server.logLevel) else {
            throw ConfigurationError("server.log_level must be one of \(Self.logLevelNames.joined(separator: ", ")), got '\(server.logLevel.prefix(64))'")
        }
        guard Self.logFormatNames.contains(server.logFormat) else {
            throw ConfigurationError("server.log_format must be text or json, got '\(server.logFormat.prefix(64))'")
        }
        if let path = server.accessLog, path.isEmpty {
            throw ConfigurationError("server.access_log: give true, false or a file path")
        }
        if let tls = server.tls { try tls.validate() }
        guard log.queueCapacity > 0, log.batchSize > 0, log.flushInterval > 0 else {
            throw ConfigurationError("log: queue_capacity, batch_size and flush_interval must be positive")
        }
        guard log.cacheMB >= 1, log.cacheMB <= 65536 else { throw ConfigurationError("log.cache_mb must be 1...65536") }
        if let mb = log.maxSizeMB, mb < 1 || mb > 1 << 24 { throw ConfigurationError("log.max_size_mb must be 1...16777216") }
        guard ["full", "normal"].contains(log.feedbackDurability) else {
            throw ConfigurationError("log.feedback_durability must be full or normal")
        }
        try validateRetention()
        if let secret = feedback.webhookSecret, secret.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }) {
            // An empty key would verify signatures anyone can compute.
            throw ConfigurationError("feedback.webhook_secret is empty: give a secret, or remove the key to accept unsigned feedback")
        }
        guard feedback.signatureTolerance >= 1, feedback.signatureTolerance <= 86_400 else {
            // Beyond a day a replayed webhook is as good as a fresh one.
            throw ConfigurationError("feedback.signature_tolerance must be 1...86400 seconds")
        }
        guard feedback.waitTimeout > 0, feedback.waitTimeout <= 3_600 else {
            throw ConfigurationError("feedback.wait_timeout must be more than 0 and at most 3600 seconds")
        }
        try validatePolicies()
        if let d = drift {
            guard (d.baseline != nil) != (d.baselineWindow != nil) else {
                throw ConfigurationError("drift: give baseline (an export file) or baseline_window (a past window of the log), one of them")
            }
            if let file = d.baseline, !FileManager.default.isReadableFile(atPath: file) {
                throw ConfigurationError("drift.baseline: cannot read \(file)")
            }
            guard d.interval >= 1 else { throw ConfigurationError("drift.interval must be at least 1 second") }
            guard d.alpha > 0, d.alpha < 1 else { throw ConfigurationError("drift.alpha must be between 0 and 1") }
            guard (100...1_000_000).contains(d.sample) else { throw ConfigurationError("drift.sample must be 100...1000000") }
            if let w = d.webhook, !(w.hasPrefix("http://") || w.hasPrefix("https://")) {
                throw ConfigurationError("drift.webhook must be an http:// or https:// URL")
            }
            for (name, value) in d.thresholds {
                guard Self.driftThresholdNames.contains(name) else {
                    throw ConfigurationError("drift.thresholds: unknown '\(name)' (known: \(Self.driftThresholdNames.sorted().joined(separator: ", ")))")
                }
                guard value >= 0, value.isFinite else { throw ConfigurationError("drift.thresholds.\(name) must be a number >= 0") }
            }
        }
        for (source, weight) in feedback.sourceWeights where !(weight >= 0 && weight.isFinite) {
            throw ConfigurationError("feedback.source_weights.\(source) must be a number >= 0")
        }
        var keyIDs = Set<String>()
        for k in auth.keys {
            guard !k.key.isEmpty else { throw ConfigurationError("auth.keys.\(k.id): key is empty") }
            guard keyIDs.insert(k.id).inserted else { throw ConfigurationError("auth.keys: duplicate id '\(k.id)'") }
            guard k.key != auth.adminKey else { throw ConfigurationError("auth.keys.\(k.id): a client key cannot be the admin key") }
        }
        if let admin = auth.adminKey, admin.utf8.count < 16 {
            throw ConfigurationError("auth.admin_key must be at least 16 characters (it opens the dashboard and reloads)")
        }
        if auth.metricsRequireAdmin, auth.adminKey == nil {
            throw ConfigurationError("auth.metrics_require_admin needs auth.admin_key (or admin_key_env)")
        }
        _ = try ListenAddress(parsing: server.listen)
    }
}

extension GatewayConfiguration {
    /// Ranges and shapes of `policies` (their targets are checked against the models by `checkPolicyTargets`,
    /// once command-line local models are in).
    func validatePolicies() throws {
        var models = Set<String>()
        for (i, p) in policies.enumerated() {
            let place = "policies[\(i)] (\(p.model))"
            guard !p.model.isEmpty else { throw ConfigurationError("policies[\(i)]: model is empty") }
            guard models.insert(p.model).inserted else { throw ConfigurationError("policies: two policies for '\(p.model)'") }
            guard !p.variants.isEmpty else { throw ConfigurationError("\(place): needs at least one variant") }
            for v in p.variants where !(v.weight >= 0 && v.weight.isFinite) {
                throw ConfigurationError("\(place): the weight of '\(v.target)' must be a number >= 0")
            }
            guard p.variants.contains(where: { $0.weight > 0 }) else {
                throw ConfigurationError("\(place): at least one variant needs a weight above 0")
            }
            guard p.variants.reduce(0, { $0 + $1.weight }).isFinite else {
                throw ConfigurationError("\(place): the weights are too large to add up; use percentages")
            }
            var seen = Set<String>()
            for v in p.variants where !seen.insert(v.target).inserted {
                throw ConfigurationError("\(place): variant '\(v.target)' is listed twice")
            }
            var fallbacks = Set<String>()
            for t in p.fallback where !fallbacks.insert(t).inserted {
                throw ConfigurationError("\(place): fallback '\(t)' is listed twice")
            }
            for t in p.targets where !Self.isTargetName(t) {
                throw ConfigurationError("\(place): target '\(t.prefix(64))' must be 1 to 128 characters of A-Za-z0-9 . _ : / @ + -")
            }
            if let b = p.firstTokenBudget, !(b > 0 && b <= 600) {
                throw ConfigurationError("\(place): first_token_budget must be more than 0 and at most 600 seconds")
            }
            if let r = p.rollout {
                guard p.variants.count >= 2 else { throw ConfigurationError("\(place): a rollout needs at least two variants") }
                let target = r.target ?? p.variants[0].target
                guard p.variants.contains(where: { $0.target == target }) else {
                    throw ConfigurationError("\(place): rollout.target '\(target)' is not one of its variants")
                }
                guard !r.steps.isEmpty, r.steps.allSatisfy({ $0 > 0 && $0 <= 100 }), zip(r.steps, r.steps.dropFirst()).allSatisfy({ $0 < $1 }) else {
                    throw ConfigurationError("\(place): rollout.steps must be rising percentages above 0 and at most 100")
                }
                guard r.stepSeconds > 0, r.checkSeconds > 0, (r.windowSeconds ?? 1) > 0, r.minRequests >= 1, r.minFeedback >= 1 else {
                    throw ConfigurationError("\(place): rollout step_seconds, check_seconds, window_seconds, min_requests and min_feedback must be positive")
                }
                for (name, value) in [("max_acceptance_drop", r.maxAcceptanceDrop), ("min_acceptance", r.minAcceptance), ("max_error_rate", r.maxErrorRate),
                                      ("min_eval_win_rate", r.minEvalWinRate)] {
                    if let value, !(0...1).contains(value) { throw ConfigurationError("\(place): rollout.\(name) must be 0...1") }
                }
                if let w = r.webhook, !(w.hasPrefix("http://") || w.hasPrefix("https://")) {
                    throw ConfigurationError("\(place): rollout.webhook must be an http:// or https:// URL")
                }
            }
            if let s = p.shadow {
                guard s.rate >= 0, s.rate <= 1 else { throw ConfigurationError("\(place): shadow.rate must be 0...1") }
                guard s.maxConcurrent >= 1, s.maxConcurrent <= 64 else {
                    throw ConfigurationError("\(place): shadow.max_concurrent must be 1...64")
                }
            }
        }
    }

    /// Target names reach response headers and metric labels: plain characters only.
    static func isTargetName(_ name: String) -> Bool {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/@+-".utf8)
        return (1...128).contains(name.utf8.count) && name.utf8.allSatisfy(allowed.contains)
    }

    /// `validatePolicies` and `checkPolicyTargets` together, for a reload.
    public func validatePoliciesAndTargets() throws {
        try validatePolicies()
        try checkPolicyTargets()
    }

    /// Every policy target is a local model or a model some route sends upstream; throws naming the first that
    /// is neither.
    public func checkPolicyTargets() throws {
        let locals = Set(localModels.map(\.name))
        for p in policies {
            for t in p.targets where !locals.contains(t) && !routes.contains(where: { ModelPattern($0.model).matches(t) }) {
                throw ConfigurationError("policies (\(p.model)): target '\(t)' is neither a local model nor routed upstream by any route")
            }
        }
    }
}

/// `HOST:PORT`, `[v6]:PORT` or `:PORT`.
public struct ListenAddress: Sendable, Equatable {
    public var host: String
    public var port: UInt16

    public init(parsing text: String) throws {
        var hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ConfigurationError("listen address '\(text)': expected [host]:port") }
            portPart = rest.dropFirst()
        } else if let colon = text.lastIndex(of: ":") {
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        } else {
            throw ConfigurationError("listen address '\(text)': expected HOST:PORT")
        }
        guard let port = UInt16(portPart) else { throw ConfigurationError("listen address '\(text)': bad port '\(portPart)'") }
        if hostPart.isEmpty { hostPart = "0.0.0.0" }
        self.host = String(hostPart)
        self.port = port
    }
}

extension GatewayConfiguration.TLS {
    /// Shapes only; the files themselves are read (and checked: present, readable, PEM, key matching the
    /// certificate) when the daemon builds its TLS context.
    public func validate() throws {
        guard !certFile.isEmpty, !keyFile.isEmpty else {
            throw ConfigurationError("server.tls needs cert_file and key_file (PEM files)")
        }
        guard handshakeTimeout > 0, handshakeTimeout <= 300 else {
            throw ConfigurationError("server.tls.handshake_timeout must be more than 0 and at most 300 seconds")
        }
        switch (clientAuth, clientCAFile) {
        case (.none, .some):
            throw ConfigurationError("server.tls.client_ca_file is set but client_auth is none: set client_auth to require or optional, or remove client_ca_file")
        case (.optional, nil), (.require, nil):
            throw ConfigurationError("server.tls.client_auth \(clientAuth.rawValue) needs client_ca_file (the CAs client certificates must chain to)")
        default:
            break
        }
    }
}
