import FlywheelConfig
import FlywheelStore

/// Requests, tokens, errors, latency, acceptance and cost per model and route over a stretch of the log, and
/// what local answers saved when priced at an upstream model's rates. Built by streaming the log one page at
/// a time: memory depends on the number of (model, route) pairs, not on the number of requests.
public struct UsageReport: Sendable {
    /// Prices as the configuration gives them (USD per one million tokens).
    public typealias Price = GatewayConfiguration.Price

    /// One (model, route, variant) group's figures; the totals row has model and route "*".
    public struct Row: Sendable {
        public var model: String
        public var route: String
        /// The target a traffic policy chose, for requests under a policy.
        public var variant: String?
        public var requests = 0
        public var errors = 0
        public var promptTokens = 0
        public var completionTokens = 0
        public var latency = LatencyDigest()
        public var timeToFirstToken = LatencyDigest()
        /// Requests whose latest verdict was accepted / rejected / edited (needed a correction).
        public var accepted = 0
        public var rejected = 0
        public var edited = 0
        public var scores = 0
        public var scoreSum = 0.0
        /// The cost logged with the requests (at the prices configured when they were served).
        public var costUSD = 0.0
        /// For local answers: their tokens priced at the baseline model's rates.
        public var baselineCostUSD = 0.0

        public var errorRate: Double { requests == 0 ? 0 : Double(errors) / Double(requests) }
        /// Accepted among the requests that got a verdict; nil when none did.
        public var acceptanceRate: Double? {
            let judged = accepted + rejected + edited
            return judged == 0 ? nil : Double(accepted) / Double(judged)
        }
        public var meanScore: Double? { scores == 0 ? nil : scoreSum / Double(scores) }
        /// What local answers saved against the baseline model (0 for upstream routes).
        public var savedUSD: Double { max(0, baselineCostUSD - costUSD) }

        mutating func merge(_ other: Row) {
            requests += other.requests
            errors += other.errors
            promptTokens += other.promptTokens
            completionTokens += other.completionTokens
            accepted += other.accepted
            rejected += other.rejected
            edited += other.edited
            scores += other.scores
            scoreSum += other.scoreSum
            costUSD += other.costUSD
            baselineCostUSD += other.baselineCostUSD
        }
    }

    public private(set) var rows: [Row] = []
    /// The same figures per client key (requests made with a key only; a virtual key's or `auth.keys`' id in
    /// `model`, route "*"), so usage and spend can be read per key.
    public private(set) var keyRows: [Row] = []
    public private(set) var total = Row(model: "*", route: "*", variant: nil)
    /// Requests the report read (every one the filter selects).
    public private(set) var requestsRead = 0

    /// The rates a local answer for `model` replaced: the requested model's own price, else the first priced
    /// variant of its traffic policy.
    public static func upstreamRates(prices: [String: Price], policies: [GatewayConfiguration.TrafficPolicy]) -> @Sendable (String) -> Price? {
        let targets = Dictionary(policies.map { ($0.model, $0.variants.map(\.target)) }, uniquingKeysWith: { a, _ in a })
        return { model in prices[model] ?? targets[model]?.lazy.compactMap { prices[$0] }.first }
    }

    /// Reads every request of `filter` from `queries`. `baseline`, when given, prices local answers.
    public init(queries: any LogQueries, filter: RequestFilter, baseline: Price? = nil) throws {
        try self.init(queries: queries, filter: filter, baselineFor: { _ in baseline })
    }

    /// Reads every request of `filter` from `queries`; `baselineFor` prices a local answer (the requested model
    /// in, the upstream rates it replaced out), nil when nothing does.
    public init(queries: any LogQueries, filter: RequestFilter, baselineFor: (String) -> Price?) throws {
        var byKey: [String: Row] = [:]
        var byClientKey: [String: Row] = [:]
        var totalLatency = LatencyDigest()
        var totalTTFT = LatencyDigest()
        try queries.forEachRequest(RequestQuery(filter: filter, limit: 500, includeFeedback: true)) { item in
            let r = item.record
            let model = r.modelRequested ?? r.modelServed ?? "-"
            let route = r.route ?? "-"
            let key = model + "\u{0}" + route + "\u{0}" + (r.variant ?? "")
            var row = byKey[key] ?? Row(model: model, route: route, variant: r.variant)
            row.requests += 1
            if r.status >= 400 || r.errorType != nil { row.errors += 1 }
            let prompt = max(0, r.promptTokens ?? 0), completion = max(0, r.completionTokens ?? 0)
            row.promptTokens += prompt
            row.completionTokens += completion
            row.latency.add(r.latencyMillis)
            totalLatency.add(r.latencyMillis)
            if let ttft = r.timeToFirstTokenMillis {
                row.timeToFirstToken.add(ttft)
                totalTTFT.add(ttft)
            }
            row.costUSD += r.costUSD ?? 0
            if route == "local", let baseline = baselineFor(model) {
                row.baselineCostUSD += baseline.cost(promptTokens: prompt, completionTokens: completion)
            }
            // The latest accepted / rejected / edited verdict decides; scores are averaged on their own.
            var verdict: FeedbackSignal?
            for f in item.feedback {
                switch f.signal {
                case .accepted, .rejected, .edited: verdict = f.signal
                case .score:
                    if let v = f.value { row.scores += 1; row.scoreSum += v }
                case .comment: break
                }
            }
            switch verdict {
            case .accepted?: row.accepted += 1
            case .rejected?: row.rejected += 1
            case .edited?: row.edited += 1
            default: break
            }
            byKey[key] = row
            if let clientKey = r.clientKeyID {
                var k = byClientKey[clientKey] ?? Row(model: clientKey, route: "*", variant: nil)
                k.requests += 1
                if r.status >= 400 || r.errorType != nil { k.errors += 1 }
                k.promptTokens += prompt
                k.completionTokens += completion
                k.latency.add(r.latencyMillis)
                k.costUSD += r.costUSD ?? 0
                switch verdict {
                case .accepted?: k.accepted += 1
                case .rejected?: k.rejected += 1
                case .edited?: k.edited += 1
                default: break
                }
                byClientKey[clientKey] = k
            }
            requestsRead += 1
        }
        keyRows = byClientKey.values.sorted { $0.model < $1.model }
        rows = byKey.values.sorted { ($0.model, $0.route, $0.variant ?? "") < ($1.model, $1.route, $1.variant ?? "") }
        for row in rows { total.merge(row) }
        total.latency = totalLatency
        total.timeToFirstToken = totalTTFT
    }
}
