import FlywheelConfig
import FlywheelStore
import XCTest
@testable import FlywheelLoop

final class RolloutJudgeTests: XCTestCase {
    func rollout() -> GatewayConfiguration.TrafficPolicy.Rollout {
        var r = GatewayConfiguration.TrafficPolicy.Rollout()
        r.steps = [5, 25, 100]
        r.stepSeconds = 60
        r.minRequests = 10
        r.minFeedback = 5
        r.maxErrorRate = 0.05
        r.maxAcceptanceDrop = 0.1
        r.maxP95LatencyMillis = 1000
        return r
    }

    func stats(_ requests: Int, errors: Int = 0, p95: Double? = 100, accepted: Int = 0, verdicts: Int = 0) -> VariantStats {
        var s = VariantStats()
        s.requests = requests
        s.errors = errors
        s.p95LatencyMillis = p95
        s.accepted = accepted
        s.verdicts = verdicts
        return s
    }

    func decide(weight: Double, since: Double = 120, last: String? = "rollout_step", target: VariantStats, others: VariantStats = VariantStats(),
                eval: String? = "passed", win: Double? = nil, _ r: GatewayConfiguration.TrafficPolicy.Rollout? = nil) -> RolloutDecision {
        RolloutJudge.decide(r ?? rollout(), .init(currentWeight: weight, secondsSinceChange: since, lastAction: last, target: target,
                                                  others: others, evalStatus: eval, evalWinRate: win))
    }

    func testTheFirstStepWaitsForAPassingEvaluation() {
        XCTAssertEqual(decide(weight: 0, last: "config", target: stats(0), eval: nil), .hold("waiting for a passing evaluation of the target"))
        XCTAssertEqual(decide(weight: 0, last: "config", target: stats(0), eval: "failed"), .hold("waiting for a passing evaluation of the target"))
        XCTAssertEqual(decide(weight: 0, last: "config", target: stats(0)), .advance(to: 5, reason: "its latest evaluation passed"))
    }

    func testStepsAdvanceOnlyAfterTheirTimeAndEnoughTraffic() {
        guard case .hold = decide(weight: 5, since: 30, target: stats(50)) else { return XCTFail("too early") }
        guard case .hold = decide(weight: 5, target: stats(9)) else { return XCTFail("too few requests") }
        XCTAssertEqual(decide(weight: 5, target: stats(10)), .advance(to: 25, reason: "guardrails held over 10 requests"))
        XCTAssertEqual(decide(weight: 25, target: stats(10)), .advance(to: 100, reason: "guardrails held over 10 requests"))
        XCTAssertEqual(decide(weight: 100, target: stats(10)), .done)
        XCTAssertEqual(decide(weight: 25, last: "rollout_rollback", target: stats(100, errors: 100)), .halted)
    }

    func testEachGuardrailRollsBack() {
        guard case .rollback(let why) = decide(weight: 25, since: 1, target: stats(20, errors: 2)), why.contains("error rate") else {
            return XCTFail("error rate")
        }
        guard case .rollback(let slow) = decide(weight: 25, target: stats(20, p95: 1500)), slow.contains("p95") else { return XCTFail("latency") }
        guard case .rollback(let liked) = decide(weight: 25, target: stats(20, accepted: 3, verdicts: 6), others: stats(50, accepted: 9, verdicts: 10)),
              liked.contains("acceptance") else { return XCTFail("acceptance") }
        var judged = rollout()
        judged.minEvalWinRate = 0.45
        guard case .rollback = decide(weight: 25, target: stats(20), win: 0.3, judged) else { return XCTFail("eval win rate") }
        guard case .hold = decide(weight: 25, target: stats(20), win: nil, judged) else { return XCTFail("no judged eval: hold") }
        // Below the minimums nothing is judged: a few errors in 5 requests, or acceptance on 4 verdicts.
        guard case .hold = decide(weight: 25, since: 1, target: stats(5, errors: 5)) else { return XCTFail("too few requests to judge") }
        guard case .advance = decide(weight: 25, target: stats(20, accepted: 0, verdicts: 4), others: stats(50, accepted: 10, verdicts: 10)) else {
            return XCTFail("too few verdicts to judge")
        }
    }

    func testAnAcceptanceFloorGuardsWithoutAComparisonGroup() {
        var floored = rollout()
        floored.minAcceptance = 0.8
        // At 100% the other variants get nothing: the drop guardrail cannot judge, the floor can.
        guard case .rollback(let why) = decide(weight: 100, target: stats(40, accepted: 7, verdicts: 10), floored),
              why.contains("below 80%") else { return XCTFail("floor at 100%") }
        XCTAssertEqual(decide(weight: 100, target: stats(40, accepted: 7, verdicts: 10)), .done)  // no floor: nothing judges it
        XCTAssertEqual(decide(weight: 100, target: stats(40, accepted: 9, verdicts: 10), floored), .done)  // above it
        XCTAssertEqual(decide(weight: 100, target: stats(40, accepted: 0, verdicts: 4), floored), .done)  // too few verdicts
    }
}
