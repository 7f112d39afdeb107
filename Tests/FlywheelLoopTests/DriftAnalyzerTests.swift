import FlywheelJSON
import XCTest
@testable import FlywheelLoop

/// The drift checks validated statistically on synthetic support traffic from a seeded generator: traffic with
/// a known shift is flagged, and traffic from the same generator stays quiet in at least 95 of 100 runs.
final class DriftAnalyzerTests: XCTestCase {
    struct Traffic {
        var topic = ["invoice", "refund", "charge", "payment", "card", "billing", "parcel", "delivery", "order", "late",
                     "address", "tracking", "account", "password", "login", "email"]
        var filler = ["my", "the", "is", "was", "please", "help", "since", "yesterday", "again", "not", "working", "with", "a", "and"]
        var words = 8...30
        var tools: [String] = ["route_ticket"]
        var toolShare = 0.5
        var system = "You route support tickets."
    }

    static let medical = ["dose", "symptom", "fever", "prescription", "allergy", "clinic", "appointment", "pain", "tablet", "doctor"]
    static let russian = ["заказ", "посылка", "доставка", "оплата", "счёт", "возврат", "пароль", "почта", "помогите", "пожалуйста"]

    func observations(_ traffic: Traffic, _ n: Int, _ rng: inout SeededRandom) -> [DriftObservation] {
        (0..<n).map { _ in
            let count = Int.random(in: traffic.words, using: &rng)
            let text = (0..<count).map { _ in
                Bool.random(using: &rng) ? traffic.topic.randomElement(using: &rng)! : traffic.filler.randomElement(using: &rng)!
            }.joined(separator: " ")
            var tools: JSON?
            if Double.random(in: 0..<1, using: &rng) < traffic.toolShare {
                tools = .array(traffic.tools.map { ["type": "function", "function": ["name": .string($0)]] })
            }
            let answer: JSON = ["role": "assistant", "content": .string("team: \(traffic.topic.randomElement(using: &rng)!)")]
            return DriftObservation(messages: [["role": "system", "content": .string(traffic.system)], ["role": "user", "content": .string(text)]],
                                    tools: tools, answer: answer)
        }
    }

    var fast: DriftThresholds {
        var t = DriftThresholds()
        t.permutations = 200
        t.mmdSample = 60
        return t
    }

    func statuses(_ window: Traffic, runs: Int, n: Int = 100) -> [DriftResult] {
        (0..<runs).map { run in
            var rng = SeededRandom(seed: UInt64(1_000 + run))
            let baseline = observations(Traffic(), n, &rng)
            let shifted = observations(window, n, &rng)
            return DriftAnalyzer.analyze(baseline: baseline, window: shifted, thresholds: fast, seed: UInt64(run))
        }
    }

    func testUnshiftedTrafficStaysQuietInAtLeast95Of100Runs() {
        let results = statuses(Traffic(), runs: 100)
        let alarms = results.filter { $0.status > .ok }
        let noisy = alarms.flatMap { $0.signals.filter { $0.status > .ok }.map(\.name) }
        print("drift false alarms on unshifted traffic: \(alarms.count) of 100 runs (\(noisy))")
        XCTAssertLessThanOrEqual(alarms.count, 5, "signals: \(noisy)")
    }

    func testEachKnownShiftIsFlagged() {
        var topic = Traffic()
        topic.topic = Self.medical
        var language = Traffic()
        language.topic = Self.russian
        language.filler = ["мой", "не", "и", "уже", "снова", "работает", "вчера"]
        var longer = Traffic()
        longer.words = 40...90
        var tool = Traffic()
        tool.tools = ["route_ticket", "lookup_order"]
        for (name, window, signal) in [("new topic", topic, "prompt_trigrams"), ("new language", language, "script_mix"),
                                       ("longer prompts", longer, "prompt_length"), ("a new tool", tool, "new_tools")] {
            let results = statuses(window, runs: 20)
            let flagged = results.filter { $0.status > .ok }.count
            let bySignal = results.filter { r in r.signals.first { $0.name == signal }!.status > .ok }.count
            XCTAssertGreaterThanOrEqual(flagged, 19, "\(name): flagged in \(flagged) of 20")
            XCTAssertGreaterThanOrEqual(bySignal, 19, "\(name): \(signal) flagged in \(bySignal) of 20")
        }
    }

    func testSmallWindowsAreSkippedNotJudgedAndOutcomeRatesNeedTheLog() {
        var rng = SeededRandom(seed: 3)
        let result = DriftAnalyzer.analyze(baseline: observations(Traffic(), 100, &rng), window: observations(Traffic(), 10, &rng), thresholds: fast)
        XCTAssertEqual(result.status, .ok)
        XCTAssertFalse(result.judged)
        XCTAssertTrue(result.signals.allSatisfy { $0.status == .skipped }, "\(result.signals.map { ($0.name, $0.status) })")
        XCTAssertEqual(result.signals.first { $0.name == "error_rate" }?.detail, "not known for an export")
    }

    func testStatisticsAgainstHandComputedValues() {
        // PSI of shares (0.5, 0.5) against (0.9, 0.1): 0.4·ln(1.8) + (−0.4)·ln(0.2) = 0.879...
        let psi = DriftAnalyzer.psi([1, 1, 3, 3], [1, 1, 1, 1, 1, 1, 1, 1, 1, 3], [2])
        XCTAssertEqual(psi, 0.4 * log(1.8) - 0.4 * log(0.2), accuracy: 1e-9)
        // Jensen–Shannon distance of disjoint distributions is √ln 2; of equal ones 0.
        XCTAssertEqual(DriftAnalyzer.jsDistance([1, 0], [0, 1]), log(2.0).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(DriftAnalyzer.jsDistance([2, 3], [4, 6]), 0, accuracy: 1e-12)
        // 10% → 20% errors over 1,000 requests each is far beyond chance; 10% → 11% is not.
        XCTAssertLessThan(DriftAnalyzer.twoProportionP(0.1, 1_000, 0.2, 1_000), 1e-6)
        XCTAssertGreaterThan(DriftAnalyzer.twoProportionP(0.1, 1_000, 0.11, 1_000), 0.2)
        XCTAssertEqual(DriftObservation.dominantScript(Array("Привет, how are you, друг мой".unicodeScalars)), "cyrillic")
        XCTAssertEqual(DriftObservation.dominantScript(Array("注文が届きません".unicodeScalars)), "kana")
        XCTAssertEqual(DriftObservation.dominantScript(Array("1234 !!".unicodeScalars)), "none")
    }
}
