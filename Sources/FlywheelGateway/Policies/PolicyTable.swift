import FlywheelConfig
import Synchronization

/// The traffic policies in force, by model name; replaced as a whole on a reload (and, later, a promotion),
/// so a request sees one consistent policy.
final class PolicyTable: Sendable {
    private let table: Mutex<[String: GatewayConfiguration.TrafficPolicy]>
    /// Read without the lock on every request: with no policy (the common case) the lookup costs one load.
    private let isEmpty: Atomic<Bool>

    init(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        table = Mutex(Self.index(policies))
        isEmpty = Atomic(policies.isEmpty)
    }

    func policy(for model: String) -> GatewayConfiguration.TrafficPolicy? {
        if isEmpty.load(ordering: .acquiring) { return nil }
        return table.withLock { $0[model] }
    }

    func replace(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        let index = Self.index(policies)
        table.withLock { $0 = index }
        isEmpty.store(index.isEmpty, ordering: .releasing)
    }

    var all: [GatewayConfiguration.TrafficPolicy] {
        table.withLock { Array($0.values) }.sorted { $0.model < $1.model }
    }

    private static func index(_ policies: [GatewayConfiguration.TrafficPolicy]) -> [String: GatewayConfiguration.TrafficPolicy] {
        Dictionary(policies.map { ($0.model, $0) }, uniquingKeysWith: { first, _ in first })
    }
}
