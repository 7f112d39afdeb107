import FlywheelConfig
import Synchronization

/// The traffic policies in force, by model name; replaced as a whole on a reload (and, later, a promotion),
/// so a request sees one consistent policy.
final class PolicyTable: Sendable {
    private let table: Mutex<[String: GatewayConfiguration.TrafficPolicy]>

    init(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        table = Mutex(Self.index(policies))
    }

    func policy(for model: String) -> GatewayConfiguration.TrafficPolicy? {
        table.withLock { $0[model] }
    }

    func replace(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        let index = Self.index(policies)
        table.withLock { $0 = index }
    }

    var all: [GatewayConfiguration.TrafficPolicy] {
        table.withLock { Array($0.values) }.sorted { $0.model < $1.model }
    }

    private static func index(_ policies: [GatewayConfiguration.TrafficPolicy]) -> [String: GatewayConfiguration.TrafficPolicy] {
        Dictionary(policies.map { ($0.model, $0) }, uniquingKeysWith: { first, _ in first })
    }
}
