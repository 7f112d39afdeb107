import Dispatch
import FlywheelJSON
import FlywheelTesting
import Foundation
import Synchronization
import XCTest
@testable import FlywheelEngine
@testable import FlywheelGateway

/// `/v1/embeddings` for local models: the request's four input forms and its refusals, the answer's two
/// encodings and its capped log copy, and the whole path through the daemon against a direct
/// `meanPooledHiddenState` of the same tokens.
final class LocalEmbeddingTests: XCTestCase {
    private typealias Config = GatewayTestConfiguration

    /// The tiny llama fixture of the engine's tests (vocabulary 320, width 64, context 256).
    private static let modelPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("FlywheelEngineTests/Fixtures/model-llama-q8.gguf").path

    // MARK: request

    private func parse(_ body: String, width: Int = 4, vocabulary: Int = 100) throws(OpenAIError) -> LocalEmbeddingRequest {
        let object = (try? JSONParser.parse(Array(body.utf8)).objectValue) ?? JSONObject()
        return try LocalEmbeddingRequest(object, width: width, vocabularySize: vocabulary)
    }

    private func refusal(_ body: String, width: Int = 4) -> OpenAIError? {
        do {
            _ = try parse(body, width: width)
            return nil
        } catch {
            return error
        }
    }

    func testTheFourInputFormsAndTheEncodings() throws {
        XCTAssertEqual(try parse(#"{"input":"hi"}"#).input, .texts(["hi"]))
        XCTAssertEqual(try parse(#"{"input":"hi"}"#).encoding, .float)
        XCTAssertEqual(try parse(#"{"input":["a","b"],"encoding_format":"base64"}"#).input, .texts(["a", "b"]))
        XCTAssertEqual(try parse(#"{"input":["a"],"encoding_format":"base64"}"#).encoding, .base64)
        XCTAssertEqual(try parse(#"{"input":[1,2,3]}"#).input, .tokens([[1, 2, 3]]))
        XCTAssertEqual(try parse(#"{"input":[[1,2],[3]],"encoding_format":null,"dimensions":null,"user":"u"}"#).input, .tokens([[1, 2], [3]]))
        XCTAssertEqual(try parse(#"{"input":"x","dimensions":4}"#).input, .texts(["x"]), "the model's own width is accepted")
        XCTAssertTrue(try parse(#"{"input":"x"}"#).single)
        XCTAssertTrue(try parse(#"{"input":[7]}"#).single)
        XCTAssertFalse(try parse(#"{"input":["x"]}"#).single)
    }

    func testRefusalsNameTheFieldAndTheInput() {
        let cases: [(String, String, String?)] = [
            (#"{"input":""}"#, "input", nil),
            (#"{"input":[]}"#, "input", nil),
            (#"{"input":["a",""]}"#, "input[1]", nil),
            (#"{"input":[[1],[]]}"#, "input[1]", nil),
            (#"{"input":[1,100]}"#, "input", nil),
            (#"{"input":[1,-1]}"#, "input", nil),
            (#"{"input":[[1],[2,500]]}"#, "input[1]", nil),
            (#"{"input":[1.5]}"#, "input", nil),
            (#"{"input":["a",1]}"#, "input", nil),
            (#"{"input":[1,"a"]}"#, "input", nil),
            (#"{"input":[[1],"a"]}"#, "input", nil),
            (#"{"input":[true]}"#, "input", nil),
            (#"{"input":{"text":"a"}}"#, "input", nil),
            (#"{"input":42}"#, "input", nil),
            (#"{"input":null}"#, "input", nil),
            (#"{}"#, "input", "missing_required_parameter"),
            (#"{"input":"a","encoding_format":"int8"}"#, "encoding_format", nil),
            (#"{"input":"a","encoding_format":1}"#, "encoding_format", nil),
            (#"{"input":"a","dimensions":0}"#, "dimensions", nil),
            (#"{"input":"a","dimensions":"4"}"#, "dimensions", nil),
            (#"{"input":"a","dimensions":3}"#, "dimensions", OpenAIError.localModelLimit),
        ]
        for (body, param, code) in cases {
            let error = refusal(body)
            XCTAssertEqual(error?.status, 400, body)
            XCTAssertEqual(error?.type, "invalid_request_error", body)
            XCTAssertEqual(error?.param, param, body)
            XCTAssertEqual(error?.code, code, body)
        }
        XCTAssertTrue(refusal(#"{"input":"a","dimensions":3}"#)?.message.contains("mean-pooled") == true)
        XCTAssertTrue(refusal(#"{"input":[1,100]}"#)?.message.contains("100") == true)
    }

    func testLimitsOnInputsTokensAndContext() throws {
        let many = "[" + Array(repeating: #""a""#, count: LocalEmbeddingRequest.maxInputs + 1).joined(separator: ",") + "]"
        XCTAssertEqual(refusal(#"{"input":\#(many)}"#)?.param, "input")
        XCTAssertTrue(refusal(#"{"input":\#(many)}"#)?.message.contains("2048") == true)
        let manyIDs = "[" + Array(repeating: "[1]", count: LocalEmbeddingRequest.maxInputs + 1).joined(separator: ",") + "]"
        XCTAssertEqual(refusal(#"{"input":\#(manyIDs)}"#)?.param, "input")
        let most = "[" + Array(repeating: #""a""#, count: LocalEmbeddingRequest.maxInputs).joined(separator: ",") + "]"
        XCTAssertNoThrow(try parse(#"{"input":\#(most)}"#))

        // One token per byte, plus a BOS.
        let tokenize: (String) -> [Int32] = { [1] + $0.utf8.map { Int32($0) } }
        let texts = try parse(#"{"input":["abc","abcdefgh"]}"#, vocabulary: 256)
        XCTAssertEqual(try texts.tokens(textPrompt: tokenize, contextLength: 9), [[1, 97, 98, 99], [1] + (97...104).map { Int32($0) }])
        XCTAssertThrowsError(try texts.tokens(textPrompt: tokenize, contextLength: 8)) {
            let error = $0 as? OpenAIError
            XCTAssertEqual(error?.param, "input[1]")
            XCTAssertEqual(error?.code, "context_length_exceeded")
            XCTAssertTrue(error?.message.contains("maximum context length is 8 tokens") == true, String(describing: error))
        }
        let single = try parse(#"{"input":"abcdefgh"}"#, vocabulary: 256)
        XCTAssertThrowsError(try single.tokens(textPrompt: tokenize, contextLength: 8)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "input", "one string is named 'input', not 'input[0]'")
        }
        let none = try parse(#"{"input":"x"}"#)
        XCTAssertThrowsError(try none.tokens(textPrompt: { _ in [] }, contextLength: 8)) {
            XCTAssertEqual(($0 as? OpenAIError)?.param, "input")
        }
        let long = String(repeating: "a", count: 999)
        let heavy = "[" + Array(repeating: #""\#(long)""#, count: 301).joined(separator: ",") + "]"
        XCTAssertThrowsError(try parse(#"{"input":\#(heavy)}"#).tokens(textPrompt: tokenize, contextLength: 4096)) {
            let error = $0 as? OpenAIError
            XCTAssertEqual(error?.code, "max_tokens_per_request")
            XCTAssertTrue(error?.message.contains("301000") == true, String(describing: error))
        }
    }

    // MARK: response

    func testFloatAndBase64AnswersReadBackToTheSameFloats() throws {
        let vectors: [[Float]] = [[0.1, -0.25, 1e-7, 3.4028235e38, -0.0], [0.5, 1, -1, 0.33333334, 7e-45]]
        let floats = LocalEmbeddingResponse.render(vectors, encoding: .float, model: "m\"x", promptTokens: 7)
        let json = try JSONParser.parse(floats.body)
        XCTAssertEqual(json["object"], "list")
        XCTAssertEqual(json["model"], "m\"x")
        XCTAssertEqual(json["usage"]?["prompt_tokens"]?.intValue, 7)
        XCTAssertEqual(json["usage"]?["total_tokens"]?.intValue, 7)
        for (i, vector) in vectors.enumerated() {
            XCTAssertEqual(json["data"]?[i]?["object"], "embedding")
            XCTAssertEqual(json["data"]?[i]?["index"]?.intValue, i)
            let read = try XCTUnwrap(json["data"]?[i]?["embedding"]?.arrayValue).map { Float($0.doubleValue!) }
            XCTAssertEqual(read.map(\.bitPattern), vector.map(\.bitPattern), "shortest forms read back exactly")
        }
        XCTAssertEqual(floats.logged, String(decoding: floats.body, as: UTF8.self))
        XCTAssertFalse(floats.loggedTruncated)

        let base64 = LocalEmbeddingResponse.render(vectors, encoding: .base64, model: "m", promptTokens: 7)
        let parsed = try JSONParser.parse(base64.body)
        for (i, vector) in vectors.enumerated() {
            let text = try XCTUnwrap(parsed["data"]?[i]?["embedding"]?.stringValue)
            let bytes = try XCTUnwrap(Data(base64Encoded: text))
            let read = stride(from: 0, to: bytes.count, by: 4).map { j -> Float in
                let b = bytes.startIndex + j
                return Float(bitPattern: UInt32(bytes[b]) | UInt32(bytes[b + 1]) << 8 | UInt32(bytes[b + 2]) << 16 | UInt32(bytes[b + 3]) << 24)
            }
            XCTAssertEqual(read.map(\.bitPattern), vector.map(\.bitPattern), "little-endian float32, as the openai SDK decodes it")
        }
        for n in 0..<7 {
            var out: [UInt8] = []
            let bytes = (0..<n).map { UInt8(200 + $0) }
            LocalEmbeddingResponse.appendBase64(bytes, to: &out)
            XCTAssertEqual(String(decoding: out, as: UTF8.self), Data(bytes).base64EncodedString(), "\(n) bytes")
        }
    }

    func testTheLogKeepsWholeItemsUpToItsCap() throws {
        let vectors = Array(repeating: [Float](repeating: 0.123456, count: 100), count: 50)
        let rendered = LocalEmbeddingResponse.render(vectors, encoding: .float, model: "m", promptTokens: 50, maxLoggedBytes: 4000)
        XCTAssertTrue(rendered.loggedTruncated)
        XCTAssertLessThanOrEqual(rendered.logged.utf8.count, 4000)
        let logged = try JSONParser.parse(Array(rendered.logged.utf8))
        let items = try XCTUnwrap(logged["data"]?.arrayValue)
        XCTAssertGreaterThan(items.count, 0)
        XCTAssertLessThan(items.count, 50)
        XCTAssertEqual(items.last?["embedding"]?.arrayValue?.count, 100, "items are kept whole")
        XCTAssertEqual(logged["usage"]?["prompt_tokens"]?.intValue, 50)
        XCTAssertEqual(try JSONParser.parse(rendered.body)["data"]?.arrayValue?.count, 50, "the client gets everything")
        let tiny = LocalEmbeddingResponse.render(vectors, encoding: .float, model: "m", promptTokens: 50, maxLoggedBytes: 10)
        XCTAssertEqual(try JSONParser.parse(Array(tiny.logged.utf8))["data"]?.arrayValue?.count, 0, "still valid JSON")
    }

    // MARK: through the daemon

    /// The daemon with the fixture served as `tiny` (one compute thread) and every other model routed to a fake
    /// upstream; `extra` adds top-level sections.
    private func harness(extra: String = "") throws -> (GatewayHarness, FakeUpstream) {
        let fake = try FakeUpstream()
        let sections = "local_models:\n  - {name: tiny, path: \"\(Self.modelPath)\"}\ninference:\n  threads: 1\n" + extra
        return (try GatewayHarness(yaml: Config.catchAll(fake, extra: sections)), fake)
    }

    /// The vectors `meanPooledHiddenState` gives for `inputs` on the served model, computed on the scheduler
    /// thread (the pool's one caller) in a context of each input's size, as the gateway does.
    private func direct(_ inference: LocalInference, _ model: LocalModel, _ inputs: [[Int32]]) throws -> [[Float]] {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex<Result<[[Float]], any Error>?>(nil)
        try inference.perform { _ in
            result.withLock {
                $0 = Result { try inputs.map { try InferenceContext(model: model.model, maxTokens: $0.count, pool: model.computePool).meanPooledHiddenState($0) } }
            }
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 30), .success)
        return try XCTUnwrap(result.withLock { $0 }).get()
    }

    private func floats(_ response: TestHTTPResponse, _ index: Int) throws -> [Float] {
        if let text = response.json?["data"]?[index]?["embedding"]?.stringValue {
            let bytes = try XCTUnwrap(Data(base64Encoded: text))
            return stride(from: 0, to: bytes.count, by: 4).map { j in
                let b = bytes.startIndex + j
                return Float(bitPattern: UInt32(bytes[b]) | UInt32(bytes[b + 1]) << 8 | UInt32(bytes[b + 2]) << 16 | UInt32(bytes[b + 3]) << 24)
            }
        }
        return try XCTUnwrap(response.json?["data"]?[index]?["embedding"]?.arrayValue).map { Float($0.doubleValue!) }
    }

    func testTheAnswerIsTheMeanPooledHiddenStateOfTheTokenizedInput() throws {
        let (gateway, _) = try harness()
        defer { gateway.stop() }
        let inference = try XCTUnwrap(gateway.gateway.inference)
        let model = try XCTUnwrap(inference.model(named: "tiny"))
        let texts = ["hello world", "x", "the same text twice"]
        let tokens = texts.map(model.textPromptTokens)
        let expected = try direct(inference, model, tokens + [[5, 6, 7]])
        let client = try gateway.connect()

        let body = #"{"model":"tiny","input":["hello world","x","the same text twice"],"user":"u1"}"#
        let response = try client.request("POST", "/v1/embeddings", headers: [("x-request-id", "emb-float"), ("Content-Type", "application/json")],
                                          body: Array(body.utf8))
        XCTAssertEqual(response.status, 200, response.text)
        XCTAssertEqual(response.header("x-flywheel-route"), "local")
        XCTAssertEqual(response.header("x-request-id"), "emb-float")
        XCTAssertEqual(response.json?["model"], "tiny")
        XCTAssertEqual(response.json?["object"], "list")
        let total = tokens.reduce(0) { $0 + $1.count }
        XCTAssertEqual(response.json?["usage"]?["prompt_tokens"]?.intValue, total)
        XCTAssertEqual(response.json?["usage"]?["total_tokens"]?.intValue, total)
        for i in 0..<3 {
            let vector = try floats(response, i)
            XCTAssertEqual(vector.count, model.model.config.embeddingLength)
            XCTAssertEqual(vector.map(\.bitPattern), expected[i].map(\.bitPattern), "input \(i) is the direct call's vector")
            XCTAssertEqual(vector.reduce(0) { $0 + $1 * $1 }, 1, accuracy: 1e-4)
        }

        let base64 = try client.post("/v1/embeddings", json: #"{"model":"tiny","input":"x","encoding_format":"base64"}"#)
        XCTAssertEqual(base64.status, 200, base64.text)
        XCTAssertEqual(try floats(base64, 0).map(\.bitPattern), expected[1].map(\.bitPattern))
        let ids = try client.post("/v1/embeddings", json: #"{"model":"tiny","input":[[5,6,7],[\#(tokens[0].map(String.init).joined(separator: ","))]]}"#)
        XCTAssertEqual(ids.status, 200, ids.text)
        XCTAssertEqual(try floats(ids, 0).map(\.bitPattern), expected[3].map(\.bitPattern))
        XCTAssertEqual(try floats(ids, 1).map(\.bitPattern), expected[0].map(\.bitPattern), "text and its token ids embed alike")

        let row = try XCTUnwrap(gateway.loggedRequest("emb-float"))
        XCTAssertEqual(row.status, 200)
        XCTAssertEqual(row.endpoint, "/v1/embeddings")
        XCTAssertEqual(row.route, "local")
        XCTAssertEqual(row.upstream, "local")
        XCTAssertEqual(row.modelServed, "tiny")
        XCTAssertEqual(row.user, "u1")
        XCTAssertEqual(row.promptTokens, total)
        XCTAssertEqual(row.totalTokens, total)
        XCTAssertNil(row.completionTokens)
        XCTAssertFalse(row.responseTruncated)
        XCTAssertEqual(row.responseJSON, response.text, "a small answer is logged as sent")

        let metrics = try client.get("/metrics").text
        XCTAssertTrue(metrics.contains(#"flywheel_requests_total{endpoint="/v1/embeddings",model="tiny",route="local",status="200"} 3"#), metrics)
    }

    func testRefusalsAreOpenAIErrorsAndLogged() throws {
        let (gateway, _) = try harness()
        defer { gateway.stop() }
        let client = try gateway.connect()
        let cases: [(String, Int, String?)] = [
            (#"{"model":"tiny","input":""}"#, 400, "input"),
            (#"{"model":"tiny","input":["ok",""]}"#, 400, "input[1]"),
            (#"{"model":"tiny","input":[[1,2],[320]]}"#, 400, "input[1]"),
            (#"{"model":"tiny","input":"a","dimensions":8}"#, 400, "dimensions"),
            (#"{"model":"tiny","input":"a","encoding_format":"binary"}"#, 400, "encoding_format"),
            (#"{"model":"tiny","input":["ok","\#(String(repeating: "word ", count: 300))"]}"#, 400, "input[1]"),
            (#"{"model":"tiny"}"#, 400, "input"),
        ]
        for (i, (body, status, param)) in cases.enumerated() {
            let response = try client.request("POST", "/v1/embeddings", headers: [("x-request-id", "emb-bad-\(i)"), ("Content-Type", "application/json")],
                                              body: Array(body.utf8))
            XCTAssertEqual(response.status, status, body)
            XCTAssertEqual(response.json?["error"]?["param"]?.stringValue, param, body)
            XCTAssertEqual(response.json?["error"]?["type"], "invalid_request_error", body)
            let row = try XCTUnwrap(gateway.loggedRequest("emb-bad-\(i)"), body)
            XCTAssertEqual(row.status, status)
            XCTAssertEqual(row.route, param == "input" && !body.contains("input") ? nil : "local", "refused before routing only when 'input' is missing")
        }
        let long = try client.post("/v1/embeddings", json: #"{"model":"tiny","input":["ok","\#(String(repeating: "word ", count: 300))"]}"#)
        XCTAssertEqual(long.json?["error"]?["code"], "context_length_exceeded")
        XCTAssertEqual(try client.post("/v1/embeddings", json: #"{"model":"tiny","input":"still fine"}"#).status, 200)
    }

    /// The scheduler thread held by a task of the test's own: what is queued behind it waits.
    private func holdScheduler(_ inference: LocalInference) throws -> DispatchSemaphore {
        let release = DispatchSemaphore(value: 0)
        let holding = DispatchSemaphore(value: 0)
        try inference.perform { _ in
            holding.signal()
            release.wait()
        }
        XCTAssertEqual(holding.wait(timeout: .now() + 10), .success)
        return release
    }

    func testAFullQueueIs503AndAPolicyFallsBackForWhatTheLocalModelCannotDo() throws {
        let (gateway, fake) = try harness(extra: """
            policies:
              - model: emb
                variants:
                  - {target: tiny, weight: 1}
                fallback: [fake-model]

            """)
        defer { gateway.stop() }
        let inference = try XCTUnwrap(gateway.gateway.inference)
        let client = try gateway.connect()

        // A width the local model does not have: the upstream answers instead.
        let shortened = try client.post("/v1/embeddings", json: #"{"model":"emb","input":["a b"],"dimensions":3}"#)
        XCTAssertEqual(shortened.status, 200, shortened.text)
        XCTAssertEqual(shortened.json?["data"]?[0]?["embedding"]?[0]?.doubleValue, 2, "the fake upstream's vector")
        XCTAssertEqual(fake.events.count(FakeUpstream.Event.request), 1)
        let local = try client.post("/v1/embeddings", json: #"{"model":"emb","input":["a b"]}"#)
        XCTAssertEqual(local.header("x-flywheel-route"), "local")
        XCTAssertEqual(local.header("x-flywheel-variant"), "tiny")

        // The scheduler busy and its queue of tasks full (max_queued 32: 32 waiting tasks).
        let release = try holdScheduler(inference)
        let drained = DispatchSemaphore(value: 0)
        for _ in 0..<inference.limits.maxQueued { try inference.perform { _ in drained.signal() } }
        let full = try client.post("/v1/embeddings", json: #"{"model":"tiny","input":"a"}"#)
        XCTAssertEqual(full.status, 503, full.text)
        XCTAssertEqual(full.json?["error"]?["code"], "overloaded")
        let overflow = try client.post("/v1/embeddings", json: #"{"model":"emb","input":"a"}"#)
        XCTAssertEqual(overflow.status, 200, "the policy's fallback takes an overloaded local model's request: \(overflow.text)")
        XCTAssertEqual(fake.events.count(FakeUpstream.Event.request), 2)
        XCTAssertTrue(overflow.header("x-flywheel-decision")?.contains("overloaded") == true,
                      String(describing: overflow.header("x-flywheel-decision")))
        release.signal()
        for _ in 0..<inference.limits.maxQueued { XCTAssertEqual(drained.wait(timeout: .now() + 10), .success) }
        XCTAssertEqual(try client.post("/v1/embeddings", json: #"{"model":"tiny","input":"a"}"#).status, 200)
    }

    func testAClientThatLeavesStopsItsBatchAndIsLogged499() throws {
        let (gateway, _) = try harness()
        defer { gateway.stop() }
        let inference = try XCTUnwrap(gateway.gateway.inference)
        let release = try holdScheduler(inference)
        let leaving = try gateway.connect()
        let inputs = Array(repeating: #""some words to embed""#, count: 200).joined(separator: ",")
        try leaving.send(TestHTTPClient.postBytes("/v1/embeddings", json: #"{"model":"tiny","input":[\#(inputs)]}"#,
                                                  headers: [("x-request-id", "emb-left")]))
        Thread.sleep(forTimeInterval: 0.2)  // the request is queued behind the held scheduler
        leaving.close()
        Thread.sleep(forTimeInterval: 0.2)  // the loop sees the close and cancels the batch
        release.signal()
        let row = try XCTUnwrap(gateway.loggedRequest("emb-left"))
        XCTAssertEqual(row.status, 499)
        XCTAssertTrue(row.incomplete)
        XCTAssertEqual(row.route, "local")
        let client = try gateway.connect()
        XCTAssertEqual(try client.post("/v1/embeddings", json: #"{"model":"tiny","input":"after"}"#).status, 200)
    }
}
