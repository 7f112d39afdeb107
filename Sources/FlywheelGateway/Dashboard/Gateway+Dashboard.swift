import FlywheelHTTP
import FlywheelJSON
import FlywheelSockets
import Synchronization

/// What the daemon's background jobs hand the dashboard: the log-based report of the last hour (acceptance,
/// cost, savings per model, route and variant) and the latest outliers. Replaced whole.
final class DashboardFeed: Sendable {
    let report = Mutex<JSON?>(nil)
    let outliers = Mutex<JSON?>(nil)
    /// When a dashboard last asked for data (monotonic nanoseconds): the log-based report is computed only
    /// while someone watches.
    let lastWatched = Atomic<UInt64>(0)
    /// The last snapshot event and when it was built: every dashboard shares it for a second.
    let event = Mutex<(at: UInt64, bytes: [UInt8])?>(nil)
    /// Rows of a snapshot's tables at most (models are client-chosen names: many of them must not make every
    /// snapshot large).
    static let maxRows = 50
}

extension Gateway {
    /// Gives the dashboard the log-based figures of the last hour (`UsageReport.json`), computed off the loops.
    /// Its rows are kept busiest first, `maxRows` at most: model names are the clients' to choose.
    public func setDashboardReport(_ report: JSON) {
        var object = report.objectValue ?? JSONObject()
        let busiest = (object["rows"]?.arrayValue ?? []).sorted { ($0["requests"]?.intValue ?? 0) > ($1["requests"]?.intValue ?? 0) }
        object["rows"] = .array(Array(busiest.prefix(DashboardFeed.maxRows)))
        dashboard.report.withLock { $0 = .object(object) }
    }

    /// Whether a dashboard asked for data within the last `seconds`.
    public func dashboardWatched(within seconds: Double) -> Bool {
        let last = dashboard.lastWatched.load(ordering: .relaxed)
        return last != 0 && Double(MonotonicClock.now() &- last) / 1e9 < seconds
    }

    /// Gives the dashboard the latest outliers (an array of `{id, score, reasons, preview}`).
    public func setDashboardOutliers(_ outliers: JSON) { dashboard.outliers.withLock { $0 = outliers } }

    /// `GET /`: the dashboard page, self-contained.
    func serveDashboardPage(_ request: GatewayRequest) {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/html; charset=utf-8")
        headers.add("Cache-Control", "no-store")
        headers.add("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:")
        headers.add("x-request-id", request.requestID)
        request.writer.send(HTTPResponse(status: 200, headers: headers, body: Array(DashboardPage.html.utf8)))
    }

    /// `GET /dashboard/data`: one snapshot as JSON.
    func serveDashboardData(_ request: GatewayRequest) {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        headers.add("x-request-id", request.requestID)
        let event = dashboardEvent()
        // The cached event is "data: <json>\n\n": the JSON is its middle.
        request.writer.send(HTTPResponse(status: 200, headers: headers, body: Array(event.dropFirst(6).dropLast(2))))
    }

    /// `GET /dashboard/events`: a snapshot now and every second after, as server-sent events, until the client
    /// leaves or the server stops.
    func serveDashboardEvents(_ request: GatewayRequest) {
        let writer = request.writer
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/event-stream")
        headers.add("Cache-Control", "no-cache")
        headers.add("x-request-id", request.requestID)
        writer.startStream(status: 200, headers: headers)
        writer.onClose { reason in if reason == .serverShutdown { writer.endStream() } }
        pushDashboard(to: writer)
    }

    private func pushDashboard(to writer: HTTPResponseWriter) {
        guard !writer.isClosed else { return }
        // A live view never ends on its own: at shutdown it ends at once rather than holding the drain.
        if writer.serverIsDraining { return writer.endStream() }
        // A client that has not taken the last snapshot skips this one: nothing queues up for it.
        if writer.pendingOutputBytes == 0 { writer.write(dashboardEvent()) }
        writer.eventLoop.schedule(afterMilliseconds: 1_000) { [weak self] in self?.pushDashboard(to: writer) }
    }

    /// The current snapshot as one SSE event, built at most once a second whatever the number of dashboards.
    private func dashboardEvent() -> [UInt8] {
        let now = MonotonicClock.now()
        if let cached = dashboard.event.withLock({ c in c.flatMap { now &- $0.at < 900_000_000 ? $0.bytes : nil } }) { return cached }
        let bytes = ServerSentEvents.encode(data: dashboardSnapshot().serializedString())
        dashboard.event.withLock { $0 = (now, bytes) }
        return bytes
    }

    /// The live figures: totals, requests per model and route since start, latency of the recent requests,
    /// the live tail, and what the background jobs computed (report, drift, outliers).
    func dashboardSnapshot() -> JSON {
        dashboard.lastWatched.store(MonotonicClock.now(), ordering: .relaxed)
        let (tail, total) = ledger.recent.latest(RecentRequests.capacity)
        var routes: [String: (model: String, route: String, requests: UInt64, errors: UInt64)] = [:]
        for c in metrics.requestCounts where c.route != "none" {
            let key = c.model + "\u{0}" + c.route
            var row = routes[key] ?? (c.model, c.route, 0, 0)
            row.requests += c.count
            if c.status >= 400 { row.errors += c.count }
            routes[key] = row
        }
        var latencies: [String: [Double]] = [:]
        for e in tail { latencies[e.route, default: []].append(e.latencyMillis) }
        func percentile(_ v: [Double], _ p: Double) -> JSON {
            guard !v.isEmpty else { return .null }
            let s = v.sorted()
            return .double((s[min(s.count - 1, Int(p * Double(s.count)))] * 10).rounded() / 10)
        }
        var drift: JSON = .null
        let history = metrics.driftHistory
        if !history.isEmpty {
            drift = ["history": .array(history.map { h in
                ["at": .int(Int64(h.at * 1000)), "status": .int(Int64(h.status)),
                 "scores": .object(JSONObject(h.scores.sorted { $0.key < $1.key }.map { ($0.key, JSON.double(($0.value * 1000).rounded() / 1000)) }))]
            })]
        }
        return [
            "at": .int(WallClock.unixMillis()),
            "requests": .int(Int64(total)),
            "in_flight": .int(Int64(metrics.inFlightCount)),
            "open_connections": .int(Int64(connectionCounter.withLock { $0 }?() ?? 0)),
            "routes": .array(routes.values.sorted { ($0.requests, $1.model) > ($1.requests, $0.model) }.prefix(DashboardFeed.maxRows).map { r in
                ["model": .string(r.model), "route": .string(r.route), "requests": .int(Int64(r.requests)), "errors": .int(Int64(r.errors))]
            }),
            "latency_ms": .object(JSONObject(latencies.sorted { $0.key < $1.key }.map { route, values in
                (route, ["p50": percentile(values, 0.5), "p95": percentile(values, 0.95), "n": .int(Int64(values.count))])
            })),
            "tail": .array(tail.prefix(25).map { e in
                ["at": .int(e.at), "id": .string(e.id), "model": .string(e.model), "route": .string(e.route), "variant": .optional(e.variant),
                 "status": .int(Int64(e.status)), "latency_ms": .double((e.latencyMillis * 10).rounded() / 10), "tokens": .int(Int64(e.tokens)),
                 "cost_usd": e.costUSD.map(JSON.double) ?? .null]
            }),
            "report": dashboard.report.withLock { $0 } ?? .null,
            "drift": drift,
            "outliers": dashboard.outliers.withLock { $0 } ?? .null,
        ]
    }
}
