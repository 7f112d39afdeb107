import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelStore
import Foundation
import Synchronization

/// Retention in the background: every `log.prune_interval` (first at start) a prune pass on the log writer's
/// thread, where its batches alternate with the rows and feedback being written, so the writer never waits
/// for more than one short batch. Each pass's counts go to `/metrics` and, when it deleted anything, to the
/// daemon's output. The retention settings in force can be replaced (a reload) between passes.
public final class RetentionJob: Sendable {
    private let log: any LogPruning
    private let metrics: GatewayMetrics
    private let say: @Sendable (String) -> Void
    private let loop: BackgroundLoop
    private let settings: Mutex<GatewayConfiguration>
    private let figures = Mutex(LogHygieneFigures())
    /// Ends a wait for a running pass at shutdown.
    private let stopping = Atomic<Bool>(false)

    init(log: any LogPruning, configuration: GatewayConfiguration, metrics: GatewayMetrics, say: @escaping @Sendable (String) -> Void) {
        self.log = log
        self.metrics = metrics
        self.say = say
        self.settings = Mutex(configuration)
        self.loop = BackgroundLoop(name: "flywheel-retention", interval: configuration.log.pruneInterval, runFirst: true)
        metrics.setLogHygiene(LogHygieneFigures())
    }

    func start() {
        loop.start { [self] in { self.runPass() } }
    }

    func shutdown() {
        stopping.store(true, ordering: .relaxed)
        loop.shutdown()
    }

    /// Retention settings for the next passes (the interval between passes stays the one given at start).
    func adopt(_ configuration: GatewayConfiguration) {
        settings.withLock { $0 = configuration }
    }

    /// The plan for a pass at `nowMillis`; nil when every row is kept for ever (`flywheel prune` uses it too).
    public static func plan(_ configuration: GatewayConfiguration, nowMillis: Int64) -> RetentionPlan? {
        guard let shortest = configuration.shortestRetention, let scanBefore = shortest.cutoff(nowMillis: nowMillis) else { return nil }
        return RetentionPlan(scanBefore: scanBefore, batchSize: configuration.log.pruneBatchSize) { model, hasFeedback in
            configuration.retention(model: model, hasFeedback: hasFeedback).cutoff(nowMillis: nowMillis)
        }
    }

    /// One pass, waited for on this job's thread (the writer does the work).
    private func runPass() {
        let configuration = settings.withLock { $0 }
        let now = Date()
        guard let plan = Self.plan(configuration, nowMillis: Int64(now.timeIntervalSince1970 * 1000)) else { return }
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<PruneResult?>(nil)
        // The counts go to /metrics as batches commit, so a long first pass on a big log shows its progress.
        let before = figures.withLock { $0 }
        let metrics = self.metrics
        let progress: @Sendable (PruneResult) -> Void = { result in
            var now = before
            now.prunedRequests += result.requests
            now.prunedFeedback += result.feedback
            metrics.setLogHygiene(now)
        }
        let started = log.prune(plan, progress: progress) { result in
            outcome.withLock { $0 = result }
            done.signal()
        }
        guard started else { return }
        while done.wait(timeout: .now() + 1) == .timedOut {
            // The writer ends the pass itself when it closes; this only stops waiting on a daemon going down.
            if stopping.load(ordering: .relaxed) { return }
        }
        guard let result = outcome.withLock({ $0 }) else { return }
        let seconds = Date().timeIntervalSince(now)
        let published = figures.withLock { f -> LogHygieneFigures in
            f.pruneRuns += 1
            f.prunedRequests += result.requests
            f.prunedFeedback += result.feedback
            f.lastPruneAt = Date().timeIntervalSince1970
            f.lastPruneSeconds = seconds
            return f
        }
        metrics.setLogHygiene(published)
        if let error = result.error {
            say("retention: prune pass stopped after \(result.requests) requests: \(error)")
        } else if result.requests > 0 {
            say("retention: pruned \(result.requests) requests and \(result.feedback) feedback rows in \(result.batches) batches "
                + String(format: "(%.2f s)", seconds))
        }
    }
}
