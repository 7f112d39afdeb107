import FlywheelHTTP
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
