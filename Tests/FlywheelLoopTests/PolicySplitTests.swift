import FlywheelConfig
import FlywheelStore
import XCTest
@testable import FlywheelLoop

final class PolicySplitTests: XCTestCase {
    typealias V = GatewayConfiguration.TrafficPolicy.Variant

    func testSettingAShareScalesTheOthersAndKeepsTheOrder() throws {
        let now = [V(target: "local", weight: 10), V(target: "mini", weight: 60), V(target: "big", weight: 30)]
        let next = try PolicySplit.setting("local", to: 50, in: now)
        XCTAssertEqual(next.map(\.target), ["local", "mini", "big"])
        XCTAssertEqual(next.map(\.weight), [50, 33.33, 16.67])
        XCTAssertEqual(try PolicySplit.setting("local", to: 100, in: now).map(\.weight), [100, 0, 0])
        // Others with no weight share the rest equally.
        XCTAssertEqual(try PolicySplit.setting("local", to: 20, in: [V(target: "local", weight: 100), V(target: "a", weight: 0), V(target: "b", weight: 0)]).map(\.weight),
                       [20, 40, 40])
        XCTAssertThrowsError(try PolicySplit.setting("nope", to: 5, in: now))
        XCTAssertThrowsError(try PolicySplit.setting("local", to: 101, in: now))
        XCTAssertThrowsError(try PolicySplit.setting("local", to: .nan, in: now))
        XCTAssertThrowsError(try PolicySplit.setting("only", to: 50, in: [V(target: "only", weight: 1)]))
        XCTAssertEqual(PolicySplit.describe([V(target: "a", weight: 1), V(target: "b", weight: 3)]), "a 25%, b 75%")
    }

    func testTheNewestChangeAppliesOnlyToTheTargetsItNames() {
        var policy = GatewayConfiguration.TrafficPolicy(model: "m", variants: [V(target: "a", weight: 0), V(target: "b", weight: 1)])
        policy.fallback = ["b"]
        func change(_ variants: [V]) -> PolicyChange {
            PolicyChange(model: "m", variantsJSON: PolicySplit.encode(variants), previousJSON: nil, action: "promote", reason: nil, source: "t")
        }
        let promoted = PolicySplit.effective([policy], latest: ["m": change([V(target: "a", weight: 40), V(target: "b", weight: 60)])])
        XCTAssertEqual(promoted[0].variants.map(\.weight), [40, 60])
        XCTAssertEqual(promoted[0].fallback, ["b"])
        // A change for other targets (an older configuration), or with no weight anywhere, is ignored.
        XCTAssertEqual(PolicySplit.effective([policy], latest: ["m": change([V(target: "x", weight: 1)])])[0].variants, policy.variants)
        XCTAssertEqual(PolicySplit.effective([policy], latest: ["m": change([V(target: "a", weight: 0), V(target: "b", weight: 0)])])[0].variants, policy.variants)
        XCTAssertNil(PolicySplit.decode("[{\"target\": \"a\", \"weight\": -1}]"))
        XCTAssertNil(PolicySplit.decode("not json"))
    }
}
