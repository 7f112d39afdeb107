import FlywheelConfig
import FlywheelStore

/// What a progressive rollout does next, judged from the split in force, the time at the current step, the
/// traffic of the last window and the target's latest evaluation.
public enum RolloutDecision: Equatable, Sendable {
    /// Stay at this share; the reason says what it waits for.
    case hold(String)
    /// Raise the target's share to this percentage.
    case advance(to: Double, reason: String)
    /// A guardrail failed: the target's share goes to 0 at once.
    case rollback(String)
    /// The last step is reached.
    case done
    /// Rolled back earlier: nothing moves until an operator promotes (or the configuration changes).
    case halted
}

public enum RolloutJudge {
    /// The inputs of one check.
    public struct Inputs: Sendable {
        public var currentWeight: Double
        public var secondsSinceChange: Double
        public var lastAction: String?
        public var target: VariantStats
        /// The other variants together.
        public var others: VariantStats
        /// The target's latest evaluation: its status and, when it was judged, its win rate.
        public var evalStatus: String?
        public var evalWinRate: Double?

        public init(currentWeight: Double, secondsSinceChange: Double, lastAction: String?, target: VariantStats, others: VariantStats,
                    evalStatus: String?, evalWinRate: Double?) {
            self.currentWeight = currentWeight
            self.secondsSinceChange = secondsSinceChange
            self.lastAction = lastAction
            self.target = target
            self.others = others
            self.evalStatus = evalStatus
            self.evalWinRate = evalWinRate
        }
    }

    public static func decide(_ r: GatewayConfiguration.TrafficPolicy.Rollout, _ x: Inputs) -> RolloutDecision {
        if x.lastAction == "rollout_rollback" { return .halted }
        func pct(_ v: Double) -> String { (v * 100).percentText + "%" }
        if x.currentWeight > 0 {
            if x.target.requests >= r.minRequests {
                if let max = r.maxErrorRate, let rate = x.target.errorRate, rate > max {
                    return .rollback("error rate \(pct(rate)) over \(x.target.requests) requests is above \(pct(max))")
                }
                if let max = r.maxP95LatencyMillis, let p95 = x.target.p95LatencyMillis, p95 > max {
                    return .rollback("p95 latency \(Int(p95)) ms is above \(Int(max)) ms")
                }
            }
            if let floor = r.minAcceptance, x.target.verdicts >= r.minFeedback, let mine = x.target.acceptanceRate, mine < floor {
                return .rollback("acceptance \(pct(mine)) over \(x.target.verdicts) verdicts is below \(pct(floor))")
            }
            if let drop = r.maxAcceptanceDrop, x.target.verdicts >= r.minFeedback, x.others.verdicts >= r.minFeedback,
               let mine = x.target.acceptanceRate, let theirs = x.others.acceptanceRate, theirs - mine > drop {
                return .rollback("acceptance \(pct(mine)) is more than \(pct(drop)) below the other variants' \(pct(theirs))")
            }
            if let min = r.minEvalWinRate, let rate = x.evalWinRate, rate < min {
                return .rollback("the latest evaluation's win rate \(pct(rate)) is below \(pct(min))")
            }
        }
        guard let last = r.steps.last, x.currentWeight < last - 0.005 else { return .done }
        let next = r.steps.first { $0 > x.currentWeight + 0.005 } ?? last
        if x.currentWeight <= 0.005 {
            guard x.evalStatus == "passed" else { return .hold("waiting for a passing evaluation of the target") }
            return .advance(to: next, reason: "its latest evaluation passed")
        }
        if x.secondsSinceChange < r.stepSeconds {
            return .hold("at \(Int(x.secondsSinceChange)) of \(Int(r.stepSeconds)) s at this step")
        }
        if x.target.requests < r.minRequests {
            return .hold("\(x.target.requests) of \(r.minRequests) requests in the window")
        }
        if r.minEvalWinRate != nil && x.evalWinRate == nil {
            return .hold("no judged evaluation of the target on record")
        }
        return .advance(to: next, reason: "guardrails held over \(x.target.requests) requests")
    }
}
