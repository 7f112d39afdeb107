import FlywheelHTTP
import FlywheelEngine
import FlywheelJSON
import XCTest
@testable import FlywheelGateway

final class LocalResponsesTests: XCTestCase {
    /// The per-token fast path renders exactly what building and serializing the chunk's JSON tree gives.
    func testTextChunkFrameMatchesTheSerializedChunkByteForByte() {
        let texts = ["", "hello", " world", "quote \" and \\ backslash", "line\nbreak\r\ttab", "\u{1}\u{1f}", "é🙂中文", "</script>"]
        for chat in [true, false] {
            for usage in [true, false] {
                let responses = LocalResponses(chat: chat, requestID: "req-\"1\"", model: "tiny\nmodel",
                                               createdAtMillis: 1_700_000_123_456, includeUsageField: usage)
                for text in texts {
                    let slow = ServerSentEvents.encode(data: responses.chunk(text: text).serializedString())
                    XCTAssertEqual(String(decoding: responses.textChunkFrame(text), as: UTF8.self),
                                   String(decoding: slow, as: UTF8.self), "chat=\(chat) usage=\(usage) text=\(text.debugDescription)")
                }
            }
        }
    }
}

final class LocalGenerationErrorTests: XCTestCase {
    /// A generation that can never fit the KV cache budget is the client's to fix (400 naming max_tokens), and a
    /// local limit a policy's fallback may take; an overload is a 503 a fallback may take.
    func testCacheBudgetAndOverloadMapToTheirStatusesAndFallbacks() {
        let budget = GenerationError.cacheBudgetExceeded(tokens: 4096, neededBytes: 96 << 20, budgetBytes: 64 << 20)
        let error = LocalExchange.mapError(budget)
        XCTAssertEqual(error.status, 400)
        XCTAssertEqual(error.code, OpenAIError.localModelLimit)
        XCTAssertTrue(error.message.contains("96 MiB") && error.message.contains("64 MiB"), error.message)
        XCTAssertEqual(LocalExchange.fallbackReason(budget), OpenAIError.localModelLimit)
        XCTAssertEqual(LocalExchange.mapError(.queueFull(limit: 3)).status, 503)
        XCTAssertEqual(LocalExchange.fallbackReason(.queueFull(limit: 3)), "overloaded")
        XCTAssertNil(LocalExchange.fallbackReason(.cancelled))
    }
}
