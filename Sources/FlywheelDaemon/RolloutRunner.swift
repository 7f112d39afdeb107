import FlywheelOutput
import FlywheelConfig
import FlywheelJSON
import FlywheelLoop
import FlywheelStore
import Foundation

/// Runs the progressive rollouts of the policies that have one, on the policy thread: every `check_seconds` it
/// reads the window's traffic per variant and the target's latest evaluation, asks `RolloutJudge`, and records a
/// step or a rollback in the policy-change log (then applied like any change), telling the operator and the
/// rollout's webhook. Owned by that one thread: its connections are never shared.
struct RolloutRunner {
    private let path: String
    private var reader: SQLiteLogReader?
    private var evals: SQLiteEvalStore?
    private var lastCheck: [String: Date] = [:]
    private var lastHold: [String: String] = [:]

    init(path: String) { self.path = path }

    /// Checks the rollouts that are due; true when one recorded a change.
    mutating func check(_ policies: [GatewayConfiguration.TrafficPolicy],
                        changes: ((SQLitePolicyChangeStore) throws -> Void) throws -> Void,
                        say: @Sendable (LogLevel, String) -> Void) -> Bool {
        var changed = false
        let now = Date()
        for policy in policies {
            guard let rollout = policy.rollout else { continue }
            if let last = lastCheck[policy.model], now.timeIntervalSince(last) < rollout.checkSeconds { continue }
            lastCheck[policy.model] = now
            do {
                if try checkOne(policy, rollout, now: now, changes: changes, say: say) { changed = true }
            } catch {
                say(.warn, "rollout of \(policy.model) not checked: \(error)")
            }
        }
        return changed
    }

    private mutating func checkOne(_ policy: GatewayConfiguration.TrafficPolicy, _ rollout: GatewayConfiguration.TrafficPolicy.Rollout,
                                   now: Date, changes: ((SQLitePolicyChangeStore) throws -> Void) throws -> Void,
                                   say: @Sendable (LogLevel, String) -> Void) throws -> Bool {
        if reader == nil { reader = try SQLiteLogReader(path: path) }
        if evals == nil { evals = try SQLiteEvalStore(path: path) }
        let target = rollout.target ?? policy.variants[0].target
        let current = PolicySplit.normalized(policy.variants)
        let weight = current.first { $0.target == target }?.weight ?? 0
        var lastChange: PolicyChange?
        var decisive: PolicyChange?
        var halted = false
        try changes { store in
            let recent = try store.changes(model: policy.model, limit: 200)
            lastChange = recent.first
            // The rollout stops after its guardrails' rollback and after an operator stopped it (a rollback, or a
            // promotion that set the target to 0), until an operator promotes the target or the configuration
            // changes: otherwise its next check would take the step the operator just undid.
            decisive = recent.first { ["promote", "config", "rollout_rollback", "rollback"].contains($0.action) }
            switch decisive?.action {
            case "rollout_rollback", "rollback": halted = true
            case "promote": halted = (PolicySplit.decode(decisive!.variantsJSON)?.first { $0.target == target }?.weight ?? 0) <= 0.005
            default: halted = false
            }
        }
        let window = rollout.windowSeconds ?? rollout.stepSeconds
        let stats = try reader!.variantStats(model: policy.model, since: Int64((now.timeIntervalSince1970 - window) * 1000))
        var others = VariantStats()
        for (variant, s) in stats where variant != target {
            others.requests += s.requests
            others.errors += s.errors
            others.accepted += s.accepted
            others.verdicts += s.verdicts
        }
        let eval = try evals!.latestRuns(candidate: target, limit: 1).first
        let winRate = eval?.summaryJSON.flatMap { try? JSONParser.parse($0, limits: .depthOnly) }?["judge"]?["win_rate"]?.doubleValue
        let since = lastChange.map { now.timeIntervalSince1970 - Double($0.createdAtMillis) / 1000 } ?? .infinity
        let decision = RolloutJudge.decide(rollout, .init(currentWeight: weight, secondsSinceChange: since,
                                                          lastAction: halted ? "rollout_rollback" : lastChange?.action,
                                                          target: stats[target] ?? VariantStats(), others: others,
                                                          evalStatus: eval?.status, evalWinRate: winRate))
        let next: [PolicySplit.Variant]
        let action: String
        let reason: String
        switch decision {
        case .hold(let why):
            let kind = why.prefix { !$0.isNumber }
            if lastHold[policy.model] != String(kind) {
                lastHold[policy.model] = String(kind)
                say(.info, "rollout of \(target) for \(policy.model): holding at \(weight.percentText)%: \(why)")
            }
            return false
        case .halted:
            // Said once per stop: the guardrails' own rollback was printed when it happened.
            if let stop = decisive, stop.action != "rollout_rollback", lastHold[policy.model] != "stopped \(stop.id)" {
                lastHold[policy.model] = "stopped \(stop.id)"
                say(.info, "rollout of \(target) for \(policy.model): stopped by the operator's \(stop.action) (change \(stop.id)); "
                    + "promote the target to resume it")
            }
            return false
        case .done:
            return false
        case .advance(let to, let why):
            next = try PolicySplit.setting(target, to: to, in: current)
            action = "rollout_step"
            reason = "step to \(to.percentText)%: \(why)"
        case .rollback(let why):
            next = try PolicySplit.setting(target, to: 0, in: current)
            action = "rollout_rollback"
            reason = why
        }
        lastHold[policy.model] = nil
        try changes { store in
            try store.record(PolicyChange(model: policy.model, variantsJSON: PolicySplit.encode(next), previousJSON: PolicySplit.encode(current),
                                          action: action, reason: reason, source: "daemon:rollout", evalRun: eval?.id))
        }
        if action == "rollout_rollback" {
            say(.warn, "rollout of \(target) for \(policy.model) rolled back to 0%: \(reason)")
        } else {
            say(.info, "rollout of \(target) for \(policy.model): \(reason)")
        }
        if let url = rollout.webhook {
            let weight = next.first { $0.target == target }?.weight ?? 0
            Webhook.post(url, event: action, JSONObject([("policy", .string(policy.model)), ("target", .string(target)), ("weight", .double(weight)),
                                                         ("reason", .string(reason))]), what: "rollout", say: say)
        }
        return true
    }
}
