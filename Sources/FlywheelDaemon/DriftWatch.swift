import FlywheelOutput
import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelJSON
import FlywheelLoop
import FlywheelStore
import Foundation
import Synchronization

/// The drift check on a schedule, on a thread of its own (never on the request path): every `interval` it
/// compares the window with the baseline as `flywheel drift` does, publishes the scores to `/metrics`, and when
/// the verdict changes says so on the daemon's output and, for a warning or an alert, POSTs it to the webhook.
final class DriftWatch: Sendable {
    private let settings: GatewayConfiguration.DriftWatch
    private let path: String
    private let gateway: Gateway
    private var metrics: GatewayMetrics { gateway.metrics }
    private let say: @Sendable (LogLevel, String) -> Void
    /// The tokenizer of `drift.local_model`, looked up at each check (a reload may replace the model).
    private let tokenizer: @Sendable () -> (@Sendable (String) -> [Int32])?
    private let loop: BackgroundLoop

    /// The ranges, checked at start-up, so a typo stops the daemon instead of failing every check.
    static func checkRanges(_ settings: GatewayConfiguration.DriftWatch) throws {
        do {
            _ = try TimeExpression.range(settings.window, now: Date())
            if let b = settings.baselineWindow { _ = try TimeExpression.range(b, now: Date()) }
        } catch {
            throw ConfigurationError("drift: \(error)")
        }
    }

    init(settings: GatewayConfiguration.DriftWatch, path: String, gateway: Gateway,
         tokenizer: @escaping @Sendable () -> (@Sendable (String) -> [Int32])? = { nil }, say: @escaping @Sendable (LogLevel, String) -> Void) {
        self.tokenizer = tokenizer
        self.settings = settings
        self.path = path
        self.gateway = gateway
        self.say = say
        self.loop = BackgroundLoop(name: "flywheel-drift", interval: settings.interval, runFirst: true)
    }

    func start() {
        loop.start { [self] in
            var state = State()
            return { self.check(&state) }
        }
    }

    func shutdown() { loop.shutdown() }

    /// What the checking thread keeps between checks (its own: never shared).
    private struct State {
        var reader: SQLiteLogReader?
        var exportBaseline: (observations: [DriftObservation], total: Int)?
        /// The last verdict said: -1 not judged, 0 ok, 1 warn, 2 alert.
        var lastVerdict: Int?
    }

    private func check(_ state: inout State) {
        do {
            if state.reader == nil { state.reader = try SQLiteLogReader(path: path) }
            let now = Date()
            var filter = RequestFilter(model: settings.model)
            filter.excludedTags = RequestFilter.evaluationTags  // golden-set replays are not traffic
            let tokenize = tokenizer()
            let baseline: (observations: [DriftObservation], total: Int)
            if let file = settings.baseline {
                // The export does not change between checks: read once (again when the tokenizer came or went).
                if state.exportBaseline == nil || (tokenize != nil) != (state.exportBaseline!.observations.first?.tokens != nil) {
                    let loaded = try DriftSource.export(path: file, cap: settings.sample, tokenize: tokenize)
                    state.exportBaseline = (loaded.observations, loaded.total)
                }
                baseline = state.exportBaseline!
            } else {
                baseline = try DriftSource.log(state.reader!, filter: filter, range: settings.baselineWindow!, now: now,
                                               cap: settings.sample, tokenize: tokenize)
            }
            let current = try DriftSource.log(state.reader!, filter: filter, range: settings.window, now: now,
                                              cap: settings.sample, tokenize: tokenize)
            let thresholds = DriftThresholds(overrides: settings.thresholds, alpha: settings.alpha, sample: settings.sample)
            var result = DriftAnalyzer.analyze(baseline: baseline.observations, window: current.observations, thresholds: thresholds)
            result.baselineCount = baseline.total
            result.windowCount = current.total
            func rank(_ s: DriftStatus) -> Int? { switch s { case .ok: 0; case .warn: 1; case .alert: 2; case .skipped: nil } }
            // Too few requests on a side is no verdict at all, not "ok": -1, said as such.
            let verdict = result.judged ? rank(result.status) ?? 0 : -1
            metrics.setDrift(signals: result.signals.map { ($0.name, $0.score, rank($0.status)) }, status: verdict,
                             at: now.timeIntervalSince1970)
            // The window's outliers for the dashboard, against the same baseline.
            let outliers = OutlierRanking.rank(window: current.observations, baseline: baseline.observations, limit: 10)
            gateway.setDashboardOutliers(.array(outliers.map { o in
                ["id": .string(o.requestID), "score": .double((o.score * 100).rounded() / 100), "reasons": .array(o.reasons.map(JSON.string)),
                 "preview": .string(String(o.preview.prefix(120)))]
            }))
            if verdict != state.lastVerdict, !result.judged {
                say(.info, "drift NOT JUDGED: too few requests (\(current.total) in the window, \(baseline.total) in the baseline; "
                    + "at least \(thresholds.minObservations) a side)")
                state.lastVerdict = verdict
            } else if verdict != state.lastVerdict {
                let moved = result.signals.filter { $0.status > .ok }.map { "\($0.name) \(String(format: "%.3f", $0.score ?? 0))" }
                let line = "drift \(result.status.rawValue.uppercased()) over \(current.total) requests" + (moved.isEmpty ? "" : ": " + moved.joined(separator: ", "))
                say(result.status > .ok ? .warn : .info, line)
                if result.status > .ok, let url = settings.webhook {
                    Webhook.post(url, event: "drift", result.json.objectValue ?? JSONObject(), what: "drift", say: say)
                }
                state.lastVerdict = verdict
            }
        } catch {
            say(.warn, "drift check failed: \(error)")
            state.reader = nil
        }
    }
}
