import XCTest
@testable import FlywheelEngine

final class SamplerTests: XCTestCase {
    private func draw(_ logits: [Float], _ parameters: SamplingParameters, times: Int = 1) -> [Int32] {
        var sampler = Sampler(parameters: parameters)
        var out: [Int32] = []
        for _ in 0 ..< times {
            var copy = logits
            out.append(copy.withUnsafeMutableBufferPointer { sampler.sample($0) })
        }
        return out
    }

    private func params(_ configure: (inout SamplingParameters) -> Void) -> SamplingParameters {
        var p = SamplingParameters()
        p.seed = 42
        configure(&p)
        return p
    }

    /// log-probabilities, so softmax at temperature 1 gives back `probabilities`.
    private func logits(_ probabilities: [Double]) -> [Float] { probabilities.map { Float(log($0)) } }

    func testZeroTemperatureIsGreedyWithLowestIndexOnTies() {
        let p = params { $0.temperature = 0 }
        XCTAssertEqual(draw([0.1, 2, -1, 2], p, times: 5), [1, 1, 1, 1, 1])
    }

    func testSameSeedReproducesDrawsAndOtherSeedsDiffer() {
        let flat = [Float](repeating: 0, count: 1000)
        let a = draw(flat, params { $0.seed = 7 }, times: 50)
        let b = draw(flat, params { $0.seed = 7 }, times: 50)
        let c = draw(flat, params { $0.seed = 8 }, times: 50)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
    }

    func testDrawFrequenciesFollowTheTemperedSoftmax() {
        let probabilities = [0.5, 0.3, 0.15, 0.05]
        let n = 10_000
        // Temperature 0.5 squares and renormalizes the probabilities.
        let p = params { $0.temperature = 0.5 }
        let draws = draw(logits(probabilities), p, times: n)
        let squared = probabilities.map { $0 * $0 }
        let z = squared.reduce(0, +)
        for (i, q) in squared.enumerated() {
            let seen = Double(draws.filter { $0 == Int32(i) }.count) / Double(n)
            XCTAssertEqual(seen, q / z, accuracy: 0.02, "token \(i)")
        }
    }

    func testTopKKeepsOnlyTheBestK() {
        let draws = draw([1, 5, 3, 4, 2, 0], params { $0.topK = 3; $0.temperature = 2 }, times: 2000)
        XCTAssertEqual(Set(draws), [1, 3, 2])
    }

    func testTopPKeepsTheSmallestNucleusAndRenormalizes() {
        let n = 10_000
        let draws = draw(logits([0.5, 0.3, 0.15, 0.05]), params { $0.topP = 0.75 }, times: n)
        XCTAssertEqual(Set(draws), [0, 1])
        let zeros = Double(draws.filter { $0 == 0 }.count) / Double(n)
        XCTAssertEqual(zeros, 0.5 / 0.8, accuracy: 0.02)
    }

    func testTopPAfterTopKMeasuresAgainstWhatTopKKept() {
        // top_k 2 leaves {0.5, 0.3} renormalized to {0.625, 0.375}; top_p 0.6 then keeps only the first.
        let draws = draw(logits([0.5, 0.3, 0.15, 0.05]), params { $0.topK = 2; $0.topP = 0.6 }, times: 500)
        XCTAssertEqual(Set(draws), [0])
    }

    func testMinPDropsTokensFarBelowTheBest() {
        let draws = draw(logits([0.5, 0.3, 0.15, 0.05]), params { $0.minP = 0.5 }, times: 2000)
        XCTAssertEqual(Set(draws), [0, 1])
    }

    func testTopPOnALargeFlatVocabularyGrowsTheCandidateSet() {
        // 100k equally likely tokens: the nucleus for top_p 0.5 is 50k tokens, far past the first 256.
        let n = 100_000
        let draws = draw([Float](repeating: 0, count: n), params { $0.topP = 0.5 }, times: 8)
        XCTAssertTrue(draws.allSatisfy { $0 < 50_001 }, "drew outside the nucleus")
        XCTAssertGreaterThan(draws.max()!, 1_000, "the nucleus must reach past the first candidates")
    }

    func testFrequencyAndPresencePenaltiesFollowOpenAIsFormula() {
        var sampler = Sampler(parameters: params { $0.frequencyPenalty = 0.5; $0.presencePenalty = 0.25; $0.temperature = 0 })
        sampler.observe([2, 2, 3])
        var l: [Float] = [1, 1, 1, 1]
        _ = l.withUnsafeMutableBufferPointer { sampler.sample($0) }
        XCTAssertEqual(l, [1, 1, 1 - 2 * 0.5 - 0.25, 1 - 0.5 - 0.25])
    }

    func testRepetitionPenaltyDividesPositiveAndMultipliesNegativeLogits() {
        var sampler = Sampler(parameters: params { $0.repetitionPenalty = 2; $0.temperature = 0 })
        sampler.observe([0, 1])
        var l: [Float] = [4, -4, 3]
        let chosen = l.withUnsafeMutableBufferPointer { sampler.sample($0) }
        XCTAssertEqual(l, [2, -8, 3])
        XCTAssertEqual(chosen, 2)
    }

    func testPenaltyWindowForgetsOldTokens() {
        var sampler = Sampler(parameters: params { $0.presencePenalty = 1; $0.penaltyWindow = 2; $0.temperature = 0 })
        sampler.observe([0, 1, 2])  // 0 has left the window
        var l: [Float] = [0, 0, 0]
        _ = l.withUnsafeMutableBufferPointer { sampler.sample($0) }
        XCTAssertEqual(l, [0, -1, -1])
    }

    func testLogitBiasCanBanAToken() {
        let draws = draw([5, 0, 0], params { $0.logitBias = [0: -100] }, times: 500)
        XCTAssertFalse(draws.contains(0))
    }

    func testValidationNamesTheParameter() {
        XCTAssertEqual(params { $0.temperature = 3 }.validationError()?.parameter, "temperature")
        XCTAssertEqual(params { $0.topP = 0 }.validationError()?.parameter, "top_p")
        XCTAssertEqual(params { $0.topK = -1 }.validationError()?.parameter, "top_k")
        XCTAssertEqual(params { $0.minP = 2 }.validationError()?.parameter, "min_p")
        XCTAssertEqual(params { $0.frequencyPenalty = 3 }.validationError()?.parameter, "frequency_penalty")
        XCTAssertEqual(params { $0.logitBias = [1: 200] }.validationError()?.parameter, "logit_bias")
        XCTAssertNil(SamplingParameters().validationError())
    }
}
