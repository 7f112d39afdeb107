import FlywheelEngine
import FlywheelJSON
import XCTest
@testable import FlywheelGateway

/// A model that is never run: only its context length matters to the checks before submitting.
private final class UnrunnableModel: GenerationModel {
    let name = "stub"
    let contextLength: Int
    init(contextLength: Int) { self.contextLength = contextLength }
    func makeSequence(capacity: Int) throws -> any TokenSequence { throw GenerationError.evaluationFailed("not runnable") }
    func isEndOfGeneration(_ token: Int32) -> Bool { true }
    func makeTextStream() -> any TokenTextStream { fatalError("not runnable") }
}

final class LocalPromptValidationTests: XCTestCase {
    /// One token per byte of text, no BOS; the chat "template" is one token per message.
    private let entry = LocalModelAdapter(
        name: "stub", model: UnrunnableModel(contextLength: 8), vocabularySize: 256,
        chatPrompt: { messages, _ in messages.map { _ in 1 } },
        textPrompt: { text in text.utf8.map { Int32($0) } })

    private func completionError(_ body: String) -> OpenAIError? {
        do {
            let object = try XCTUnwrap(JSONParser.parse(body).objectValue)
            let tokens = try Gateway.completionPromptTokens(object, entry: entry)
            try Gateway.checkPromptFits(tokens, contextLength: entry.model.contextLength, chat: false)
            return nil
        } catch {
            return error as? OpenAIError
        }
    }

    func testEmptyCompletionPromptIsAnInvalidRequestNamingPrompt() {
        for body in [#"{"prompt":""}"#, #"{"prompt":[]}"#, #"{"prompt":[""]}"#] {
            let error = completionError(body)
            XCTAssertEqual(error?.status, 400, body)
            XCTAssertEqual(error?.type, "invalid_request_error", body)
            XCTAssertEqual(error?.param, "prompt", body)
            XCTAssertNil(error?.code, "an empty prompt is not a context length problem: \(body)")
            XCTAssertTrue(error?.message.contains("empty") == true, body)
        }
    }

    func testTooLongCompletionPromptNamesPromptNotMessages() {
        let error = completionError(#"{"prompt":"abcdefgh"}"#)
        XCTAssertEqual(error?.param, "prompt")
        XCTAssertEqual(error?.code, "context_length_exceeded")
        XCTAssertTrue(error?.message.contains("your prompt has 8 tokens") == true, String(describing: error?.message))
        XCTAssertNil(completionError(#"{"prompt":"abcdefg"}"#), "7 tokens leave room for one more in a context of 8")
        XCTAssertEqual(completionError(#"{"prompt":[1,2,3,4,5,6,7,8,9]}"#)?.param, "prompt")
    }

    func testChatPromptChecksNameMessages() {
        XCTAssertThrowsError(try Gateway.checkPromptFits(Array(repeating: 1, count: 8), contextLength: 8, chat: true)) {
            let error = $0 as? OpenAIError
            XCTAssertEqual(error?.param, "messages")
            XCTAssertEqual(error?.code, "context_length_exceeded")
            XCTAssertTrue(error?.message.contains("your messages resulted in 8 tokens") == true)
        }
        XCTAssertThrowsError(try Gateway.checkPromptFits([], contextLength: 8, chat: true)) {
            let error = $0 as? OpenAIError
            XCTAssertEqual(error?.param, "messages")
            XCTAssertEqual(error?.type, "invalid_request_error")
            XCTAssertNil(error?.code)
        }
        XCTAssertNoThrow(try Gateway.checkPromptFits([1, 2], contextLength: 8, chat: true))
    }
}
