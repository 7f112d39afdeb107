import FlywheelOutput
import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelLoop
import FlywheelStore
import Foundation
import Synchronization

/// Keeps the gateway's traffic policies in step with the policy-change log: the configuration's split is
/// recorded when it is new (so an edited file wins over older promotions), and a background thread polls for
/// changes made by `flywheel promote` / `rollback` (or a rollout) and applies the newest split of each policy
/// without a restart. The change store's connection is used under one lock, by one thread at a time.
final class PolicySync: Sendable {
    private let gateway: Gateway
    private let path: String
    private let store: StoreAccess
    private let configured = Mutex<[GatewayConfiguration.TrafficPolicy]>([])
    private let lastSeen = Atomic<Int64>(-1)
    private let loop: BackgroundLoop
    /// Called with each line worth telling the operator (a change applied, a store problem).
    private let say: @Sendable (LogLevel, String) -> Void

    init(gateway: Gateway, path: String, interval: Double = 1, say: @escaping @Sendable (LogLevel, String) -> Void) {
        self.gateway = gateway
        self.path = path
        self.store = StoreAccess(path: path)
        self.loop = BackgroundLoop(name: "flywheel-policies", interval: interval)
        self.say = say
    }

    /// Takes `policies` as the configured ones: records each one's split when the log does not have it as the
    /// newest configuration yet, then applies what is in force. On the caller's thread.
    func adopt(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        configured.withLock { $0 = policies }
        guard !policies.isEmpty else { return gateway.setPolicies([]) }
        do {
            try withStore { store throws in
                let latest = try store.latestPerModel()
                for policy in policies {
                    let recorded = try store.latest(model: policy.model, action: "config").flatMap { PolicySplit.decode($0.variantsJSON) }
                    guard recorded != policy.variants else { continue }
                    let before = latest[policy.model].map(\.variantsJSON)
                    try store.record(PolicyChange(model: policy.model, variantsJSON: PolicySplit.encode(policy.variants),
                                                  previousJSON: before, action: "config", reason: "the configuration's split",
                                                  source: "daemon"))
                }
            }
        } catch {
            say(.warn, "cannot record the configured policies in the log (\(error)); serving them as configured")
            return gateway.setPolicies(policies)
        }
        lastSeen.store(-1, ordering: .relaxed)
        sync()
    }

    /// Applies the newest split of each configured policy when the change log moved. Returns whether it did.
    @discardableResult
    func sync() -> Bool {
        let policies = configured.withLock { $0 }
        guard !policies.isEmpty else { return false }
        do {
            let applied: Bool = try withStore { store throws in
                let top = try store.maxID()
                guard top != lastSeen.load(ordering: .relaxed) else { return false }
                // Each policy's newest change that fits it: a damaged row (not JSON, other targets, no weight) is
                // skipped with a warning, never taken as a reason to fall back to the configured split.
                var latest: [String: PolicyChange] = [:]
                for policy in policies {
                    for change in try store.changes(model: policy.model, limit: 50) {
                        if PolicySplit.fits(change, policy) { latest[policy.model] = change; break }
                        if change.id > lastSeen.load(ordering: .relaxed) {
                            say(.warn, "policy change \(change.id) for \(policy.model) cannot be applied (its split does not fit the policy); skipped")
                        }
                    }
                }
                let effective = PolicySplit.effective(policies, latest: latest)
                gateway.setPolicies(effective)
                if lastSeen.load(ordering: .relaxed) >= 0 {
                    for (old, new) in zip(policies, effective) where latest[old.model].map({ $0.id > lastSeen.load(ordering: .relaxed) }) == true {
                        let change = latest[old.model]!
                        say(.info, "policy \(new.model): \(change.action) by \(change.source): \(PolicySplit.describe(new.variants))"
                            + (change.reason.map { " (\($0))" } ?? ""))
                    }
                }
                lastSeen.store(top, ordering: .relaxed)
                return true
            }
            return applied
        } catch {
            say(.warn, "cannot read policy changes (\(error)); the split in force stays")
            return false
        }
    }

    private func withStore<T>(_ body: (SQLitePolicyChangeStore) throws -> T) throws -> T {
        try store.with(body)
    }

    /// Polls every `interval` seconds on a thread of its own until `shutdown`.
    func start() {
        loop.start { [self] in
            var rollouts = RolloutRunner(path: path)
            return {
                self.sync()
                // The policies in force, as the gateway has them (also after a reload that dropped them all).
                let policies = self.gateway.policiesInForce.filter { $0.rollout != nil }
                if !policies.isEmpty, rollouts.check(policies, changes: { body in try self.withStore(body) }, say: self.say) {
                    self.sync()
                }
            }
        }
    }

    func shutdown() { loop.shutdown() }
}

/// The change store, opened on first use, and the lock that serialises every use of it: its SQLite connection
/// is not thread-safe, and `adopt` (a reload) and the polling thread both use it. Unchecked Sendable because the
/// lock, not the type system, guarantees one user at a time.
private final class StoreAccess: @unchecked Sendable {
    private let lock = NSLock()
    private var store: SQLitePolicyChangeStore?
    private let path: String

    init(path: String) { self.path = path }

    func with<T>(_ body: (SQLitePolicyChangeStore) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if store == nil { store = try SQLitePolicyChangeStore(path: path) }
        return try body(store!)
    }
}
