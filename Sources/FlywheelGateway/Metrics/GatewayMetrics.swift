import Synchronization

/// The gateway's own counters, rendered in Prometheus text format at `GET /metrics`. Thread-safe.
public final class GatewayMetrics: Sendable {
    /// Label sets beyond this many collapse into `model="other"`: model names come from clients, and an
    /// unbounded label set would grow memory and scrape size without limit.
    static let maxSeries = 2_000
    /// Label values are cut to this many bytes: a client chooses the model name, and one long name must not
    /// grow every scrape.
    static let maxLabelBytes = 128

    struct RequestKey: Hashable { var endpoint: String; var model: String; var route: String; var status: Int }
    struct UpstreamErrorKey: Hashable { var upstream: String; var kind: String }

    private let requests = Mutex<[RequestKey: UInt64]>([:])
    private let upstreamErrors = Mutex<[UpstreamErrorKey: UInt64]>([:])
    /// Policy decisions by (policy, variant, reason) and hand-overs by (policy, from, reason): names from the
    /// configuration and reasons from a fixed set, bounded like the rest.
    private let policyDecisions = Mutex<[[String]: UInt64]>([:])
    private let policyFallbacks = Mutex<[[String]: UInt64]>([:])
    private let shadowRuns = Mutex<[[String]: UInt64]>([:])
    /// The latest drift check: each signal's score and status (0 ok, 1 warn, 2 alert), the verdict, its time.
    /// Retention and redaction figures (see `GatewayMetrics+Retention`); nil until the daemon publishes some.
    private let logHygiene = Mutex<LogHygieneFigures?>(nil)
    /// Reads the write-time redaction's counts by kind, when `log.redact` is on.
    private let redactionCounts = Mutex<(@Sendable () -> [String: Int])?>(nil)
    private let drift = Mutex<(signals: [(name: String, score: Double?, status: Int?)], status: Int, at: Double)?>(nil)
    /// The last drift checks, oldest first (at most `driftHistory`), for the dashboard.
    private let driftChecks = Mutex<[(at: Double, status: Int, scores: [String: Double])]>([])
    static let driftHistory = 100
    private let durations = Mutex<[String: Histogram]>([:])
    public let overhead = Histogram(bounds: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1])
    public let timeToFirstByte = Histogram(bounds: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
    private let inFlight = Atomic<Int>(0)
    private static let durationBounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]

    public init() {}

    public func requestStarted() { inFlight.add(1, ordering: .relaxed) }

    /// Records one finished request. `overheadSeconds` is total time minus time waiting on the upstream.
    public func requestFinished(endpoint: String, model: String?, route: String?, status: Int,
                                seconds: Double, overheadSeconds: Double?, firstByteSeconds: Double?) {
        inFlight.subtract(1, ordering: .relaxed)
        // A request that never reached a route is labelled by why: no model given, or a model nobody serves.
        let modelLabel = route == nil ? (model == nil ? "none" : "unknown") : Self.labelValue(model ?? "none")
        let routeLabel = route.map(Self.labelValue) ?? (model == nil ? "none" : "unknown")
        let endpointLabel = Self.labelValue(endpoint)
        requests.withLock { table in
            var key = RequestKey(endpoint: endpointLabel, model: modelLabel, route: routeLabel, status: status)
            if table[key] == nil, table.count >= Self.maxSeries { key.model = "other" }
            table[key, default: 0] += 1
        }
        let histogram = durations.withLock { table in
            if let h = table[endpointLabel] { return h }
            let h = Histogram(bounds: Self.durationBounds)
            table[endpointLabel] = h
            return h
        }
        histogram.observe(seconds)
        if let overheadSeconds { overhead.observe(max(0, overheadSeconds)) }
        if let firstByteSeconds { timeToFirstByte.observe(firstByteSeconds) }
    }

    /// Counts an upstream failure by kind: connect, timeout, transfer, status_5xx, status_429...
    public func upstreamError(upstream: String, kind: String) {
        let key = UpstreamErrorKey(upstream: Self.labelValue(upstream), kind: Self.labelValue(kind))
        upstreamErrors.withLock { table in
            guard table[key] != nil || table.count < Self.maxSeries else { return }
            table[key, default: 0] += 1
        }
    }

    /// Counts a traffic policy's decision for a request.
    public func policyDecision(policy: String, variant: String, reason: String) {
        Self.count(policyDecisions, [policy, variant, reason].map(Self.labelValue))
    }

    /// Counts a hand-over from a failing target to the policy's next one.
    public func policyFallback(policy: String, from: String, reason: String) {
        Self.count(policyFallbacks, [policy, from, reason].map(Self.labelValue))
    }

    /// Publishes the log's retention and redaction figures (the daemon's prune job, after each pass).
    public func setLogHygiene(_ figures: LogHygieneFigures) {
        logHygiene.withLock { $0 = figures }
    }

    /// Where `/metrics` reads the write-time redaction's counts from (set once by the daemon).
    public func setRedactionCounts(_ counts: @escaping @Sendable () -> [String: Int]) {
        redactionCounts.withLock { $0 = counts }
    }

    /// Records the latest drift check (statuses: 0 ok, 1 warn, 2 alert; nil for a skipped signal).
    public func setDrift(signals: [(name: String, score: Double?, status: Int?)], status: Int, at: Double) {
        drift.withLock { $0 = (signals, status, at) }
        var scores: [String: Double] = [:]
        for s in signals { if let score = s.score { scores[s.name] = score } }
        driftChecks.withLock { h in
            h.append((at, status, scores))
            if h.count > Self.driftHistory { h.removeFirst(h.count - Self.driftHistory) }
        }
    }

    /// The drift checks so far, oldest first: time, verdict (-1 not judged, 0 ok, 1 warn, 2 alert) and each signal's score.
    public var driftHistory: [(at: Double, status: Int, scores: [String: Double])] { driftChecks.withLock { $0 } }

    /// Requests answered since start, by model, route and status.
    var requestCounts: [(model: String, route: String, status: Int, count: UInt64)] {
        requests.withLock { table in table.map { ($0.key.model, $0.key.route, $0.key.status, $0.value) } }
    }

    var inFlightCount: Int { inFlight.load(ordering: .relaxed) }

    /// Counts a shadow run started (`admitted`) or skipped (`shed_concurrency`, `shed_load`).
    public func shadowRun(policy: String, target: String, outcome: String) {
        Self.count(shadowRuns, [policy, target, outcome].map(Self.labelValue))
    }

    private static func count(_ table: borrowing Mutex<[[String]: UInt64]>, _ key: [String]) {
        table.withLock { t in
            guard t[key] != nil || t.count < maxSeries else { return }
            t[key, default: 0] += 1
        }
    }

    /// Figures owned by other components, sampled at scrape time.
    public struct Gauges: Sendable {
        public var logQueueDepth: Int
        public var logDropped: Int
        public var logWritten: Int
        public var logWriteErrors: Int
        public var openConnections: Int
        /// Whether the log's storage takes writes, rows held in memory for the retry, and failed writes by reason.
        public var logHealthy = true
        public var logHeldRows = 0
        public var logStorageErrors: [String: Int] = [:]
        /// Local inference, when local models are served: generations running, waiting, and tokens so far.
        public var localActive: Int?
        public var localQueued: Int?
        public var localPromptTokens: Int?
        public var localGeneratedTokens: Int?
        /// Batched steps, token rows in them and KV cache bytes held by the local engine.
        public var localBatching: (steps: Int, rows: Int, cacheBytes: Int)?
        /// TLS sessions alive and handshakes failed since start, when the listener speaks HTTPS.
        public var tls: (sessions: Int, handshakeFailures: Int)?
        public init(logQueueDepth: Int, logDropped: Int, logWritten: Int, logWriteErrors: Int, openConnections: Int) {
            self.logQueueDepth = logQueueDepth
            self.logDropped = logDropped
            self.logWritten = logWritten
            self.logWriteErrors = logWriteErrors
            self.openConnections = openConnections
        }
    }

    /// The whole exposition, Prometheus text format 0.0.4.
    public func render(_ gauges: Gauges) -> String {
        var out = ""
        out += "# HELP flywheel_requests_total Requests answered, by endpoint, model, route and status.\n"
        out += "# TYPE flywheel_requests_total counter\n"
        let reqs = requests.withLock { $0 }.sorted { ($0.key.endpoint, $0.key.model, $0.key.status) < ($1.key.endpoint, $1.key.model, $1.key.status) }
        for (k, v) in reqs {
            out += "flywheel_requests_total{endpoint=\"\(escape(k.endpoint))\",model=\"\(escape(k.model))\",route=\"\(escape(k.route))\",status=\"\(k.status)\"} \(v)\n"
        }
        out += "# HELP flywheel_request_duration_seconds Time from a request's first byte to the end of its response.\n"
        out += "# TYPE flywheel_request_duration_seconds histogram\n"
        for (endpoint, h) in durations.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            h.render(name: "flywheel_request_duration_seconds", labels: "endpoint=\"\(escape(endpoint))\"", into: &out)
        }
        out += "# HELP flywheel_gateway_overhead_seconds Time spent in the gateway itself: total minus time waiting on the upstream.\n"
        out += "# TYPE flywheel_gateway_overhead_seconds histogram\n"
        overhead.render(name: "flywheel_gateway_overhead_seconds", labels: "", into: &out)
        out += "# HELP flywheel_time_to_first_byte_seconds Time from a request's arrival to the upstream's first response byte.\n"
        out += "# TYPE flywheel_time_to_first_byte_seconds histogram\n"
        timeToFirstByte.render(name: "flywheel_time_to_first_byte_seconds", labels: "", into: &out)
        out += "# HELP flywheel_upstream_errors_total Failed upstream attempts, by upstream and kind.\n"
        out += "# TYPE flywheel_upstream_errors_total counter\n"
        for (k, v) in upstreamErrors.withLock({ $0 }).sorted(by: { ($0.key.upstream, $0.key.kind) < ($1.key.upstream, $1.key.kind) }) {
            out += "flywheel_upstream_errors_total{upstream=\"\(escape(k.upstream))\",kind=\"\(escape(k.kind))\"} \(v)\n"
        }
        func labelled(_ name: String, _ help: String, _ labels: [String], _ table: borrowing Mutex<[[String]: UInt64]>) {
            let rows = table.withLock { $0 }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
            guard !rows.isEmpty else { return }
            out += "# HELP \(name) \(help)\n# TYPE \(name) counter\n"
            for (key, value) in rows {
                let pairs = zip(labels, key).map { "\($0)=\"\(escape($1))\"" }.joined(separator: ",")
                out += "\(name){\(pairs)} \(value)\n"
            }
        }
        labelled("flywheel_policy_decisions_total", "Requests a traffic policy sent to a variant, by policy, variant and reason (split or override).",
                 ["policy", "variant", "reason"], policyDecisions)
        labelled("flywheel_policy_fallbacks_total", "Hand-overs from a target that failed before its first token to the policy's next one.",
                 ["policy", "from", "reason"], policyFallbacks)
        labelled("flywheel_shadow_runs_total", "Shadow runs of sampled requests on a policy's shadow target: admitted, or shed (concurrency, load).",
                 ["policy", "target", "outcome"], shadowRuns)
        if let d = drift.withLock({ $0 }) {
            out += "# HELP flywheel_drift_score The latest drift check's score per signal (see flywheel drift).\n# TYPE flywheel_drift_score gauge\n"
            for s in d.signals { if let score = s.score { out += "flywheel_drift_score{signal=\"\(escape(s.name))\"} \(score)\n" } }
            out += "# HELP flywheel_drift_signal_status The latest drift check's verdict per signal: 0 ok, 1 warn, 2 alert.\n# TYPE flywheel_drift_signal_status gauge\n"
            for s in d.signals { if let status = s.status { out += "flywheel_drift_signal_status{signal=\"\(escape(s.name))\"} \(status)\n" } }
            out += "# HELP flywheel_drift_status The latest drift check's verdict: -1 not judged (too few requests), 0 ok, 1 warn, 2 alert.\n# TYPE flywheel_drift_status gauge\nflywheel_drift_status \(d.status)\n"
            out += "# HELP flywheel_drift_last_check_timestamp_seconds When the latest drift check ran.\n# TYPE flywheel_drift_last_check_timestamp_seconds gauge\nflywheel_drift_last_check_timestamp_seconds \(Int(d.at))\n"
        }
        func scalar(_ name: String, _ type: String, _ help: String, _ value: Int) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        scalar("flywheel_in_flight_requests", "gauge", "Requests being handled now.", inFlight.load(ordering: .relaxed))
        scalar("flywheel_open_connections", "gauge", "Client connections open now.", gauges.openConnections)
        if let tls = gauges.tls {
            scalar("flywheel_tls_sessions", "gauge", "TLS sessions alive now (handshaking or under a connection).", tls.sessions)
            scalar("flywheel_tls_handshake_failures_total", "counter",
                   "TLS handshakes that failed or timed out (plain HTTP sent to the TLS port included).", tls.handshakeFailures)
        }
        scalar("flywheel_log_queue_depth", "gauge", "Log rows waiting for the background writer.", gauges.logQueueDepth)
        scalar("flywheel_log_dropped_total", "counter", "Log rows dropped because the queue was full.", gauges.logDropped)
        scalar("flywheel_log_written_total", "counter", "Log rows committed.", gauges.logWritten)
        scalar("flywheel_log_write_errors_total", "counter", "Log rows that failed to insert.", gauges.logWriteErrors)
        scalar("flywheel_log_healthy", "gauge", "1 while the log's storage takes writes; 0 while it refuses them (disk full, read-only, I/O errors).",
               gauges.logHealthy ? 1 : 0)
        scalar("flywheel_log_held_rows", "gauge", "Log rows of a failed write held in memory for the retry.", gauges.logHeldRows)
        out += "# HELP flywheel_log_storage_errors_total Log writes the storage refused, by reason.\n# TYPE flywheel_log_storage_errors_total counter\n"
        for reason in ["disk_full", "read_only", "io_error", "cant_open"] {
            out += "flywheel_log_storage_errors_total{reason=\"\(reason)\"} \(gauges.logStorageErrors[reason] ?? 0)\n"
        }
        var hygiene = logHygiene.withLock { $0 }
        if let counts = redactionCounts.withLock({ $0 }) {
            if hygiene == nil { hygiene = LogHygieneFigures() }
            hygiene?.redactions = counts()
        }
        hygiene?.render(into: &out, escape: escape)
        if let active = gauges.localActive, let queued = gauges.localQueued {
            scalar("flywheel_local_generations_active", "gauge", "Local generations holding a slot.", active)
            scalar("flywheel_local_generations_queued", "gauge", "Local generations waiting for a slot.", queued)
            scalar("flywheel_local_prompt_tokens_total", "counter", "Prompt tokens evaluated by local models (cached prefixes excluded).", gauges.localPromptTokens ?? 0)
            scalar("flywheel_local_generated_tokens_total", "counter", "Tokens generated by local models.", gauges.localGeneratedTokens ?? 0)
            if let batching = gauges.localBatching {
                scalar("flywheel_local_steps_total", "counter", "Scheduler steps of the local engine that evaluated tokens (one batched pass per model each).", batching.steps)
                scalar("flywheel_local_step_rows_total", "counter", "Token rows evaluated in those steps; rows / steps is the mean batch.", batching.rows)
                scalar("flywheel_local_kv_cache_bytes", "gauge", "KV cache bytes the local sequences hold, running and idle.", batching.cacheBytes)
            }
        }
        return out
    }

    /// A label value as stored: at most `maxLabelBytes` bytes (cut at a character boundary, marked with "…").
    static func labelValue(_ text: String) -> String {
        guard text.utf8.count > maxLabelBytes else { return text }
        var end = text.utf8.index(text.utf8.startIndex, offsetBy: maxLabelBytes - 3)
        while end > text.utf8.startIndex, text.utf8[end] & 0xC0 == 0x80 { end = text.utf8.index(before: end) }
        return String(decoding: text.utf8[..<end], as: UTF8.self) + "…"
    }

    /// A label value escaped for the text format: backslash, double quote and line feed escaped as the format
    /// defines; other control characters (CR, ESC, ...), which the format has no escape for, become U+FFFD.
    /// Works on bytes: Swift's `Character` treats "\r\n" as one, which a character-level check misses.
    func escape(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F || $0 == 0x5C || $0 == 0x22 }) else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 8)
        for byte in s.utf8 {
            switch byte {
            case 0x5C: out += [0x5C, 0x5C]
            case 0x22: out += [0x5C, 0x22]
            case 0x0A: out += [0x5C, UInt8(ascii: "n")]
            case 0..<0x20, 0x7F: out += [0xEF, 0xBF, 0xBD]
            default: out.append(byte)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
