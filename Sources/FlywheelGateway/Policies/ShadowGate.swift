import FlywheelConfig
import Synchronization

/// Decides whether a request also runs on its policy's shadow target: sampled by a stable hash of the request
/// id (so a rate of 0.1 shadows one request in ten), at most `maxConcurrent` at once per policy, and shed first
/// when a local shadow target already has generations waiting (shadows never queue behind real traffic).
final class ShadowGate: Sendable {
    enum Admission: String, Sendable {
        case admitted
        case sampledOut = "sampled_out"
        case shedConcurrency = "shed_concurrency"
        case shedLoad = "shed_load"
    }

    private let running = Mutex<[String: Int]>([:])

    /// Admits a shadow run (taking a place the caller must `release`), or says why not. `localQueued` (the
    /// local shadow target's waiting generations, nil for an upstream) is asked only for a sampled request.
    func admit(_ policy: GatewayConfiguration.TrafficPolicy, requestID: String, localQueued: @autoclosure () -> Int?) -> Admission {
        guard let shadow = policy.shadow else { return .sampledOut }
        guard shadow.rate > 0, PolicyDecision.bucket(policy: "shadow\u{0}" + policy.model, key: requestID) < shadow.rate else {
            return .sampledOut
        }
        if let queued = localQueued(), queued > 0 { return .shedLoad }
        return running.withLock { table in
            let now = table[policy.model, default: 0]
            guard now < shadow.maxConcurrent else { return .shedConcurrency }
            table[policy.model] = now + 1
            return .admitted
        }
    }

    func release(_ policy: String) {
        running.withLock { table in
            let now = table[policy, default: 0]
            table[policy] = now > 1 ? now - 1 : nil
        }
    }

    /// Shadow runs in progress, by policy.
    var inProgress: [String: Int] { running.withLock { $0 } }
}
