import FlywheelConfig
import FlywheelHTTP
import XCTest
@testable import FlywheelGateway

final class PolicyDecisionTests: XCTestCase {
    typealias Policy = GatewayConfiguration.TrafficPolicy

    func policy(_ variants: [(String, Double)], sticky: [Policy.StickyKey] = [.user, .episode]) -> Policy {
        var p = Policy(model: "support-bot", variants: variants.map { .init(target: $0.0, weight: $0.1) })
        p.sticky = sticky
        p.fallback = ["gpt-4o-mini"]
        return p
    }

    func decide(_ p: Policy, user: String? = nil, episode: String? = nil, tags: [String] = [], id: String = "req",
                header: String? = nil) throws -> PolicyDecision {
        var headers = HTTPHeaders()
        if let header { headers.add("x-flywheel-variant", header) }
        return try PolicyDecision.decide(p, headers: headers, user: user, episode: episode, tags: tags, requestID: id)
    }

    /// 20,000 users split 10/90: the shares are within a few standard errors of the weights.
    func testWeightsSplitTheCallers() throws {
        let p = policy([("local", 10), ("gpt-4o-mini", 90)])
        var local = 0
        for n in 0..<20_000 where try decide(p, user: "user-\(n)").chosen == "local" { local += 1 }
        // Binomial standard error at n = 20,000 and p = 0.1 is 0.0021; allow four of them.
        XCTAssertEqual(Double(local) / 20_000, 0.1, accuracy: 0.0085)
    }

    func testACallerStaysOnItsVariantAndRequestsWithoutAKeyAreDrawnOneByOne() throws {
        let p = policy([("local", 50), ("gpt-4o-mini", 50)])
        for n in 0..<200 {
            let first = try decide(p, user: "u\(n)", id: "a\(n)")
            XCTAssertEqual(first.stickyKey, "user")
            for k in 0..<5 { XCTAssertEqual(try decide(p, user: "u\(n)", id: "r\(n)-\(k)").chosen, first.chosen) }
        }
        // The episode is the next key; with neither, each request id draws on its own, so both variants occur.
        XCTAssertEqual(try decide(p, episode: "ep-1").stickyKey, "episode")
        let drawn = Set(try (0..<100).map { try decide(p, id: "id-\($0)").chosen })
        XCTAssertEqual(drawn, ["local", "gpt-4o-mini"])
        XCTAssertNil(try decide(p, id: "x").stickyKey)
        // `sticky: none` ignores the user.
        let loose = policy([("local", 50), ("gpt-4o-mini", 50)], sticky: [])
        XCTAssertEqual(Set(try (0..<100).map { try decide(loose, user: "same", id: "id-\($0)").chosen }).count, 2)
        // `tag` takes the first tag.
        XCTAssertEqual(try decide(policy([("local", 1), ("gpt-4o-mini", 1)], sticky: [.tag]), tags: ["tenant-a"]).stickyKey, "tag")
    }

    /// Raising the first variant's weight (a rollout) only moves callers towards it: nobody it had leaves.
    func testARolloutKeepsEveryCallerTheCandidateAlreadyHad() throws {
        let before = policy([("local", 5), ("gpt-4o-mini", 95)])
        let after = policy([("local", 25), ("gpt-4o-mini", 75)])
        var moved = 0
        for n in 0..<5_000 {
            let a = try decide(before, user: "u\(n)").chosen, b = try decide(after, user: "u\(n)").chosen
            if a == "local" { XCTAssertEqual(b, "local") }
            if a != b { moved += 1 }
        }
        XCTAssertGreaterThan(moved, 0)
    }

    func testTheBucketIsStableAcrossProcessesAndZeroWeightsGetNothing() throws {
        // A fixed value: the hash must not depend on the process (Swift's Hasher is seeded per run).
        XCTAssertEqual(PolicyDecision.bucket(policy: "support-bot", key: "user\u{0}alice"),
                       PolicyDecision.bucket(policy: "support-bot", key: "user\u{0}alice"))
        // The same figure computed independently (FNV-1a, then splitmix64's finaliser, in Python).
        XCTAssertEqual(PolicyDecision.bucket(policy: "p", key: "k"), 0.5969750556540564)
        let p = policy([("local", 0), ("gpt-4o-mini", 1)])
        for n in 0..<500 { XCTAssertEqual(try decide(p, user: "u\(n)").chosen, "gpt-4o-mini") }
    }

    func testTheOverrideHeaderChoosesATargetOfThePolicyOnly() throws {
        let p = policy([("local", 1), ("gpt-4o-mini", 1)])
        let d = try decide(p, user: "u", header: "gpt-4o-mini")
        XCTAssertEqual(d.reason, .override)
        XCTAssertEqual(d.chosen, "gpt-4o-mini")
        XCTAssertThrowsError(try decide(p, header: "someone-else")) { error in
            XCTAssertEqual((error as? OpenAIError)?.param, "x-flywheel-variant")
        }
        var closed = p
        closed.allowOverride = false
        XCTAssertThrowsError(try decide(closed, header: "local"))
    }

    func testTheDecisionAsLoggedAndAsHeaders() throws {
        var d = try decide(policy([("local", 1), ("gpt-4o-mini", 0)]), user: "u")
        d.tried.append(.init(target: "local", reason: "overloaded"))
        d.target = "gpt-4o-mini"
        XCTAssertEqual(d.json["reason"]?.stringValue, "fallback")
        XCTAssertEqual(d.json["chosen"]?.stringValue, "local")
        XCTAssertEqual(d.json["tried"]?[0]?["reason"]?.stringValue, "overloaded")
        let headers = Dictionary(uniqueKeysWithValues: d.headers)
        XCTAssertEqual(headers["x-flywheel-variant"], "gpt-4o-mini")
        XCTAssertEqual(headers["x-flywheel-decision"], "split; sticky=user; fallback after local (overloaded)")
    }
}

final class ShadowGateTests: XCTestCase {
    func policy(rate: Double, maxConcurrent: Int) -> GatewayConfiguration.TrafficPolicy {
        var p = GatewayConfiguration.TrafficPolicy(model: "m", variants: [.init(target: "a", weight: 1)])
        p.shadow = .init(target: "b", rate: rate, maxConcurrent: maxConcurrent)
        return p
    }

    func testAdmissionSamplesBoundsAndShedsUnderLoad() {
        let gate = ShadowGate()
        let p = policy(rate: 1, maxConcurrent: 2)
        XCTAssertEqual(gate.admit(p, requestID: "r1", localQueued: nil), .admitted)
        XCTAssertEqual(gate.admit(p, requestID: "r2", localQueued: 0), .admitted)
        XCTAssertEqual(gate.admit(p, requestID: "r3", localQueued: nil), .shedConcurrency)
        gate.release("m")
        XCTAssertEqual(gate.admit(p, requestID: "r4", localQueued: 3), .shedLoad, "a local target with a queue is shed")
        XCTAssertEqual(gate.admit(p, requestID: "r4", localQueued: nil), .admitted)
        gate.release("m")
        gate.release("m")
        XCTAssertEqual(gate.inProgress, [:])
        gate.release("m")  // one release too many never goes negative
        XCTAssertEqual(gate.inProgress, [:])
        // A rate of 0.3: about 30% of 10,000 request ids, and the same ids every time.
        let sampled = policy(rate: 0.3, maxConcurrent: 64)
        var admitted = 0
        for n in 0..<10_000 where gate.admit(sampled, requestID: "id-\(n)", localQueued: nil) == .admitted {
            admitted += 1
            gate.release("m")
        }
        XCTAssertEqual(Double(admitted) / 10_000, 0.3, accuracy: 0.02)
        XCTAssertEqual(gate.admit(policy(rate: 0, maxConcurrent: 1), requestID: "x", localQueued: nil), .sampledOut)
    }
}
