import Foundation
import FlywheelJSON
import FlywheelStore

/// Thresholds a run must meet; a failed one makes `flywheel eval` exit non-zero, so it can gate a deploy.
public struct EvalGates: Sendable {
    /// Share of items whose candidate answer passed every deterministic check.
    public var minPassRate: Double?
    /// The judge's win rate for the candidate, ties counted half: (wins + ties / 2) / judged.
    public var minWinRate: Double?
    /// How far the candidate's pass rate may fall below the baseline's (the reference's is 1).
    public var maxRegression: Double?

    public init() {}

    public var json: JSON {
        ["min_pass_rate": minPassRate.map(JSON.double) ?? .null, "min_win_rate": minWinRate.map(JSON.double) ?? .null,
         "max_regression": maxRegression.map(JSON.double) ?? .null]
    }
}

/// The figures of a run, from its items' stored results: pass rates, the judge's win/tie/loss with a Wilson
/// interval, the judge's consistency under the swap, latency and cost per side, and the gates.
public struct EvalSummary: Sendable {
    public struct Side: Sendable {
        public var name: String
        public var answered = 0
        public var errors = 0
        public var checked = 0
        public var passed = 0
        public var latencies: [Double] = []
        public var requestIDs: [String] = []
        public var costUSD: Double?
        public var promptTokens = 0
        public var completionTokens = 0
        public var passRate: Double? { checked == 0 ? nil : Double(passed) / Double(checked) }
    }

    public var items = 0
    public var candidate: Side
    public var baseline: Side
    /// True when the dataset's references are the baseline (no baseline model).
    public var baselineIsReference: Bool
    public var wins = 0, ties = 0, losses = 0, judgeErrors = 0, consistent = 0
    public var gates: [(name: String, threshold: Double, value: Double?, passed: Bool)] = []

    public var judged: Int { wins + ties + losses }
    public var winRate: Double? { judged == 0 ? nil : (Double(wins) + Double(ties) / 2) / Double(judged) }
    public var passed: Bool { gates.allSatisfy(\.passed) }
    /// The run's status as recorded (and read by `flywheel promote` and a rollout's guardrail): `incomplete` when
    /// the candidate answered nothing, `completed` without a gate (a run without one proves nothing a promotion
    /// could rely on), else `passed` or `failed`.
    public var status: String {
        candidate.answered == 0 ? "incomplete" : gates.isEmpty ? "completed" : passed ? "passed" : "failed"
    }

    /// Figures from the item results (`EvalRunner.evaluate`'s JSON); `queries`, when given, prices each side
    /// from the log rows of its requests (rows still being written are waited for up to `wait` seconds).
    public init(results: [JSON], options: EvalOptions, gates: EvalGates, queries: (any LogQueries)?, wait: Double = 10) {
        candidate = Side(name: options.candidate)
        let shadowPairs = results.contains { $0["baseline"]?["logged"]?.boolValue == true }
        baseline = Side(name: options.baseline ?? (shadowPairs ? "the other side of each shadow pair" : "reference"))
        baselineIsReference = options.baseline == nil && !shadowPairs
        items = results.count
        for r in results {
            Self.add(r["candidate"], to: &candidate)
            if !baselineIsReference { Self.add(r["baseline"], to: &baseline) }
            if let judge = r["judge"] {
                switch judge["outcome"]?.stringValue {
                case "win": wins += 1
                case "tie": ties += 1
                case "loss": losses += 1
                default: judgeErrors += 1
                }
                if judge["consistent"]?.boolValue == true { consistent += 1 }
            }
        }
        if baselineIsReference {
            // The references pass their own checks by definition.
            baseline.checked = candidate.checked
            baseline.passed = candidate.checked
        }
        if let queries {
            Self.price(&candidate, queries, wait: wait)
            if !baselineIsReference { Self.price(&baseline, queries, wait: wait) }
        }
        if let t = gates.minPassRate {
            addGate("min_pass_rate", t, candidate.passRate, candidate.passRate.map { $0 >= t } ?? false)
        }
        if let t = gates.minWinRate {
            addGate("min_win_rate", t, winRate, winRate.map { $0 >= t } ?? false)
        }
        if let t = gates.maxRegression {
            let regression = candidate.passRate.map { (baseline.passRate ?? 1) - $0 }
            addGate("max_regression", t, regression, regression.map { $0 <= t } ?? false)
        }
    }

    private mutating func addGate(_ name: String, _ threshold: Double, _ value: Double?, _ passed: Bool) {
        gates.append((name, threshold, value, passed))
    }

    private static func add(_ side: JSON?, to s: inout Side) {
        guard let side else { return }
        if side["answer"] != nil, side["answer"] != .null { s.answered += 1 } else { s.errors += 1 }
        if let passed = side["passed"]?.boolValue {
            s.checked += 1
            if passed { s.passed += 1 }
        }
        if let ms = side["latency_ms"]?.doubleValue { s.latencies.append(ms) }
        if let id = side["request_id"]?.stringValue { s.requestIDs.append(id) }
    }

    /// Cost and tokens of a side's requests, from their log rows.
    private static func price(_ side: inout Side, _ queries: any LogQueries, wait: Double) {
        let deadline = Date().addingTimeInterval(wait)
        var cost = 0.0
        var priced = false
        for id in side.requestIDs {
            var row = try? queries.request(id: id)
            while row == nil && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
                row = try? queries.request(id: id)
            }
            guard let row else { continue }
            if let c = row.costUSD { cost += c; priced = true }
            side.promptTokens += row.promptTokens ?? 0
            side.completionTokens += row.completionTokens ?? 0
        }
        side.costUSD = priced ? cost : (side.requestIDs.isEmpty ? nil : 0)
    }

    /// The Wilson score interval (95%) of `successes` in `n` (Wilson 1927): sound at small n and near 0 or 1,
    /// where the normal approximation is not.
    public static func wilson(_ successes: Double, _ n: Int, z: Double = 1.96) -> (low: Double, high: Double)? {
        guard n > 0 else { return nil }
        let nn = Double(n), p = successes / nn, z2 = z * z
        let center = (p + z2 / (2 * nn)) / (1 + z2 / nn)
        let half = z * ((p * (1 - p) + z2 / (4 * nn)) / nn).squareRoot() / (1 + z2 / nn)
        return (max(0, center - half), min(1, center + half))
    }

    // MARK: output

    public var json: JSON {
        func side(_ s: Side) -> JSON {
            var o = JSONObject()
            o["name"] = .string(s.name)
            o["answered"] = .int(Int64(s.answered))
            o["errors"] = .int(Int64(s.errors))
            o["checked"] = .int(Int64(s.checked))
            o["passed"] = .int(Int64(s.passed))
            o["pass_rate"] = s.passRate.map(JSON.double) ?? .null
            if let ci = Self.wilson(Double(s.passed), s.checked) { o["pass_rate_ci95"] = [.double(ci.low), .double(ci.high)] }
            o["latency_ms"] = ["p50": nearestRankPercentile(s.latencies, 0.5).map(JSON.double) ?? .null,
                               "p95": nearestRankPercentile(s.latencies, 0.95).map(JSON.double) ?? .null]
            o["cost_usd"] = s.costUSD.map(JSON.double) ?? .null
            o["prompt_tokens"] = .int(Int64(s.promptTokens))
            o["completion_tokens"] = .int(Int64(s.completionTokens))
            return .object(o)
        }
        var judge = JSONObject()
        judge["wins"] = .int(Int64(wins))
        judge["ties"] = .int(Int64(ties))
        judge["losses"] = .int(Int64(losses))
        judge["errors"] = .int(Int64(judgeErrors))
        judge["win_rate"] = winRate.map(JSON.double) ?? .null
        if let ci = Self.wilson(Double(wins) + Double(ties) / 2, judged) { judge["win_rate_ci95"] = [.double(ci.low), .double(ci.high)] }
        judge["consistent_under_swap"] = judged + judgeErrors == 0 ? .null : .double(Double(consistent) / Double(judged + judgeErrors))
        return [
            "items": .int(Int64(items)),
            "candidate": side(candidate),
            "baseline": side(baseline),
            "baseline_is_reference": .bool(baselineIsReference),
            "judge": judged + judgeErrors == 0 ? .null : .object(judge),
            "gates": .array(gates.map { ["name": .string($0.name), "threshold": .double($0.threshold),
                                         "value": $0.value.map(JSON.double) ?? .null, "passed": .bool($0.passed)] }),
            "passed": .bool(passed),
        ]
    }

    /// The summary for people.
    public func table(runID: String) -> String {
        func pct(_ x: Double?) -> String { x.map { String(format: "%.1f%%", $0 * 100) } ?? "-" }
        func ci(_ successes: Double, _ n: Int) -> String {
            Self.wilson(successes, n).map { String(format: " [%.1f–%.1f]", $0.low * 100, $0.high * 100) } ?? ""
        }
        func ms(_ s: Side) -> String {
            guard let p50 = nearestRankPercentile(s.latencies, 0.5), let p95 = nearestRankPercentile(s.latencies, 0.95) else { return "-" }
            return String(format: "%.0f / %.0f ms", p50, p95)
        }
        func cost(_ s: Side) -> String { s.costUSD.map { String(format: "$%.6f", $0) } ?? "-" }
        var rows: [[String]] = [["", "candidate: \(candidate.name)", baselineIsReference ? "baseline: the references" : "baseline: \(baseline.name)"]]
        rows.append(["answered", "\(candidate.answered) (\(candidate.errors) errors)",
                     baselineIsReference ? "-" : "\(baseline.answered) (\(baseline.errors) errors)"])
        rows.append(["checks passed", "\(candidate.passed)/\(candidate.checked) \(pct(candidate.passRate))\(ci(Double(candidate.passed), candidate.checked))",
                     baselineIsReference ? "\(baseline.passed)/\(baseline.checked) (by definition)"
                        : "\(baseline.passed)/\(baseline.checked) \(pct(baseline.passRate))\(ci(Double(baseline.passed), baseline.checked))"])
        rows.append(["latency p50 / p95", ms(candidate), baselineIsReference ? "-" : ms(baseline)])
        rows.append(["cost", cost(candidate), baselineIsReference ? "-" : cost(baseline)])
        let width = rows.map { $0[0].count }.max() ?? 0, second = rows.map { $0[1].count }.max() ?? 0
        var out = "flywheel eval \(runID): \(items) items\n"
        for r in rows {
            out += r[0].padding(toLength: width, withPad: " ", startingAt: 0) + "  "
                + r[1].padding(toLength: second, withPad: " ", startingAt: 0) + "  " + r[2] + "\n"
        }
        if judged + judgeErrors > 0 {
            out += "judge: win \(wins), tie \(ties), loss \(losses), error \(judgeErrors); win rate \(pct(winRate))"
                + ci(Double(wins) + Double(ties) / 2, judged)
                + "; consistent under the swap \(pct(Double(consistent) / Double(max(1, judged + judgeErrors))))\n"
        }
        for g in gates {
            out += "gate \(g.name) \(g.threshold): \(g.passed ? "passed" : "FAILED") (\(g.value.map { String(format: "%.3f", $0) } ?? "no value"))\n"
        }
        return out
    }
}
