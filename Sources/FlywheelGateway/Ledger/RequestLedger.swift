import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import FlywheelStore
import Synchronization

/// The one place a request's end is written down: turns a `RequestOutcome` into the log row and the metrics,
/// and tells feedback waiting for the request that its row is queued. Every exchange ends here, exactly once.
/// Thread-safe; called on event loops and on the inference thread.
final class RequestLedger: Sendable {
    let log: any LogSink
    let metrics: GatewayMetrics
    /// The prices in force, for rows whose context carries none of its own (see `RequestContext.settings`).
    private let prices: Mutex<PriceTable>
    let inFlight = InFlightRequests()
    /// The dashboard's live tail.
    let recent = RecentRequests()
    /// Virtual keys' rate windows and spend: the ledger adds each answered request's tokens and cost.
    let keyUsage = KeyLimiter()

    init(log: any LogSink, metrics: GatewayMetrics, prices: PriceTable) {
        self.log = log
        self.metrics = metrics
        self.prices = Mutex(prices)
    }

    /// The prices of rows from now on (a reload); requests already running keep the ones they started with.
    func setPrices(_ table: PriceTable) { prices.withLock { $0 = table } }

    /// A logged request started: it counts as in flight, and feedback for its id waits for its row.
    func begin(_ context: RequestContext) {
        if context.shadowOf == nil { metrics.requestStarted() }
        inFlight.begin(context.requestID)
    }

    /// Writes the request's end. Call it before the response's last byte goes out, so that a client that has
    /// the whole answer can always post feedback for it.
    func finish(_ context: RequestContext, _ outcome: RequestOutcome) {
        let now = MonotonicClock.now()
        let totalSeconds = Double(now &- context.receivedAtNanos) / 1e9
        let row = record(context, outcome, totalSeconds: totalSeconds)
        recent.add(.init(at: row.createdAtMillis, id: row.id, model: row.modelRequested ?? "-", route: row.route ?? "-", variant: row.variant,
                         status: row.status, latencyMillis: row.latencyMillis, tokens: row.totalTokens ?? 0, costUSD: row.costUSD))
        log.enqueue(row)
        if let key = context.clientKeyID, context.shadowOf == nil {
            keyUsage.record(keyID: key, tokens: row.totalTokens ?? 0, costUSD: row.costUSD ?? 0, now: Int64(now / 1_000_000_000))
        }
        if context.shadowOf == nil, let access = context.accessLog {
            access.noteForAccessLog("model", row.modelRequested ?? "-")
            access.noteForAccessLog("route", row.route ?? "-")
            if let target = row.variant ?? row.upstream { access.noteForAccessLog("target", target) }
        }
        inFlight.end(context.requestID)
        context.onFinish?()
        guard context.shadowOf == nil else { return }
        let firstByteSeconds = outcome.firstByteNanos.map { Double($0 &- context.receivedAtNanos) / 1e9 }
        metrics.requestFinished(endpoint: context.endpoint, model: context.modelRequested, route: context.route,
                                status: outcome.status, seconds: totalSeconds,
                                overheadSeconds: outcome.serviceSeconds.map { max(0, totalSeconds - $0) } ?? (outcome.upstream == nil ? totalSeconds : nil),
                                firstByteSeconds: firstByteSeconds)
    }

    /// Answers a request the gateway refused itself (never sent anywhere), logging it first.
    func reject(_ context: RequestContext, _ error: OpenAIError, writer: any ResponseSink) {
        finish(context, RequestOutcome(status: error.status, error: error))
        writer.send(context.errorResponse(error))
    }

    func record(_ context: RequestContext, _ outcome: RequestOutcome, totalSeconds: Double) -> RequestRecord {
        var r = context.record(status: outcome.status, latencyMillis: totalSeconds * 1000)
        r.upstream = outcome.upstream
        r.attempts = outcome.attempts
        r.upstreamMillis = outcome.serviceSeconds.map { $0 * 1000 }
        r.timeToFirstTokenMillis = outcome.firstByteNanos.map { Double($0 &- context.receivedAtNanos) / 1e6 }
        r.responseJSON = outcome.responseText
        r.responseTruncated = outcome.responseTruncated
        r.incomplete = outcome.interruption != nil || outcome.cutShort
        r.modelServed = outcome.modelServed
        r.promptTokens = outcome.usage.prompt
        r.completionTokens = outcome.usage.completion
        r.totalTokens = outcome.usage.total ?? outcome.usage.sum
        let prices = context.settings?.prices ?? self.prices.withLock { $0 }
        // A policy's target answered: priced as that target (a local model's own rate, or the upstream model it
        // routed to), not as the name the app sent, which is usually the frontier model the target replaces.
        r.costUSD = prices.cost(requestedModel: r.variant ?? context.modelRequested, servedModel: r.modelServed,
                                promptTokens: r.promptTokens, completionTokens: r.completionTokens)
        if let error = outcome.error {
            r.errorType = error.code ?? error.type
            r.errorMessage = outcome.errorDetail ?? error.message
        } else if let body = outcome.upstreamError?["error"] {
            r.errorType = body["code"]?.stringValue ?? body["type"]?.stringValue ?? "upstream_error"
            r.errorMessage = body["message"]?.stringValue ?? body.serializedString()
        } else if outcome.status >= 400 {
            r.errorType = "upstream_status_\(outcome.status)"
        }
        if r.contentWithheld {
            // Metadata only: the body, the answer and any error text (which may quote either) are never stored.
            r.requestJSON = ""
            r.responseJSON = nil
            r.responseTruncated = false
            r.errorMessage = nil
        }
        return r
    }
}
