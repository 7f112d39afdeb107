@testable import FlywheelEngine
import Foundation
import XCTest

/// The serving facade over the checked-in model fixtures: loading, lookup by name, a greedy
/// generation through its scheduler, and refusals at load time.
final class LocalInferenceTests: XCTestCase {

    func testLoadsModelsByNameAndGeneratesTheReferenceTokens() throws {
        let qwen = try ModelReference("model-qwen2-q8")
        let llama = try ModelReference("model-llama-q8")
        let inference = try LocalInference(
            models: [LocalModelSpec(name: "qwen", path: qwen.path, contextLength: 64), LocalModelSpec(name: "llama", path: llama.path)],
            threads: 2)
        defer { inference.shutdown() }
        XCTAssertEqual(inference.models.map(\.name), ["qwen", "llama"])
        XCTAssertEqual(inference.threadCount, 2)
        XCTAssertFalse(inference.kernels.isEmpty)
        XCTAssertNil(inference.model(named: "missing"))
        let model = try XCTUnwrap(inference.model(named: "qwen"))
        XCTAssertEqual(model.contextLength, 64)

        // The text the reference's greedy tokens decode to, up to an end token or four tokens.
        let steps = 4
        var stream = model.makeTextStream()
        var expected = ""
        var expectedCount = 0
        for token in qwen.generated.prefix(steps) {
            if model.isEndOfGeneration(token) { break }
            expected += stream.append(token)
            expectedCount += 1
        }
        expected += stream.finish()
        XCTAssertGreaterThan(expectedCount, 0, "the fixture should generate before ending")

        let log = EventLog()
        _ = try inference.submit(model: model, request: GenerationRequest.greedy(qwen.tokens, max: steps), onEvent: log.handler)
        log.wait()
        XCTAssertEqual(log.summary?.completionTokens, expectedCount)
        XCTAssertEqual(log.text, expected)
        // (Counted before the event is sent; the active count drops only after, so it is not checked here.)
        XCTAssertEqual(inference.counts.generatedTokens, expectedCount)
    }

    func testAModelThatCannotLoadFailsCreationNamingItsFile() throws {
        let good = try ModelReference("model-qwen2-q8")
        let missing = "/nonexistent/model.gguf"
        XCTAssertThrowsError(try LocalInference(models: [LocalModelSpec(name: "a", path: good.path),
                                                         LocalModelSpec(name: "b", path: missing)], threads: 1)) {
            XCTAssertTrue("\($0)".contains(missing), "\($0)")
        }
        XCTAssertThrowsError(try LocalInference(models: [LocalModelSpec(name: "a", path: good.path),
                                                         LocalModelSpec(name: "a", path: good.path)], threads: 1)) {
            guard case .duplicateModelName("a")? = $0 as? LocalModelError else { return XCTFail("\($0)") }
        }
    }

    func testReloadAddsReplacesRemovesAndChangesNothingWhenALoadFails() throws {
        let qwen = try ModelReference("model-qwen2-q8")
        let llama = try ModelReference("model-llama-q8")
        let inference = try LocalInference(models: [LocalModelSpec(name: "a", path: qwen.path),
                                                    LocalModelSpec(name: "b", path: qwen.path)], threads: 1)
        defer { inference.shutdown() }
        let keptB = try XCTUnwrap(inference.model(named: "b"))
        let report = try inference.reload([LocalModelSpec(name: "b", path: qwen.path),
                                           LocalModelSpec(name: "a", path: qwen.path, contextLength: 32),
                                           LocalModelSpec(name: "c", path: llama.path)])
        XCTAssertEqual(report.unchanged, ["b"])
        XCTAssertEqual(report.replaced, ["a"])
        XCTAssertEqual(report.added, ["c"])
        XCTAssertEqual(report.removed, [])
        XCTAssertEqual(inference.models.map(\.name), ["b", "a", "c"])
        XCTAssertTrue(inference.model(named: "b") === keptB)  // unchanged models are not loaded again
        XCTAssertEqual(inference.model(named: "a")?.contextLength, 32)

        XCTAssertThrowsError(try inference.reload([LocalModelSpec(name: "d", path: "/nonexistent/d.gguf")])) {
            XCTAssertTrue("\($0)".contains("/nonexistent/d.gguf"), "\($0)")
        }
        XCTAssertEqual(inference.models.map(\.name), ["b", "a", "c"])  // a failed reload changes nothing

        let emptied = try inference.reload([])
        XCTAssertEqual(Set(emptied.removed), ["a", "b", "c"])
        XCTAssertTrue(inference.models.isEmpty)
    }

    func testShutdownRefusesFurtherGenerations() throws {
        let reference = try ModelReference("model-llama-q8")
        let inference = try LocalInference(models: [LocalModelSpec(name: "m", path: reference.path)], threads: 1)
        inference.shutdown()
        inference.shutdown()  // idempotent
        XCTAssertThrowsError(try inference.submit(model: inference.models[0], request: GenerationRequest.greedy(reference.tokens, max: 1), onEvent: { _ in })) {
            XCTAssertEqual($0 as? GenerationError, .shuttingDown)
        }
    }
}
