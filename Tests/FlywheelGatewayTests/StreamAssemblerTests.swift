import XCTest
import FlywheelJSON
@testable import FlywheelGateway

final class StreamAssemblerTests: XCTestCase {
    func testAssemblesChatChunksIntoOneCompletion() throws {
        var a = StreamAssembler()
        for data in [
            #"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            #"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            #"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            #"{"id":"c1","object":"chat.completion.chunk","created":5,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
            "[DONE]",
        ] { a.add(data: data) }
        let out = try XCTUnwrap(a.assembled())
        XCTAssertEqual(out["object"], "chat.completion")
        XCTAssertEqual(out["choices"]?[0]?["message"]?["content"], "Hello")
        XCTAssertEqual(out["choices"]?[0]?["message"]?["role"], "assistant")
        XCTAssertEqual(out["choices"]?[0]?["finish_reason"], "stop")
        XCTAssertEqual(out["usage"]?["total_tokens"], .int(5))
        XCTAssertTrue(a.sawDone)
        XCTAssertEqual(a.servedModel, "m")
    }

    func testAssemblesToolCallArgumentsAcrossChunks() throws {
        var a = StreamAssembler()
        a.add(data: #"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#)
        a.add(data: #"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}"#)
        a.add(data: #"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":"tool_calls"}]}"#)
        let message = try XCTUnwrap(a.assembled()?["choices"]?[0]?["message"])
        XCTAssertEqual(message["content"], .null)
        XCTAssertEqual(message["tool_calls"]?[0]?["function"]?["name"], "get_weather")
        XCTAssertEqual(message["tool_calls"]?[0]?["function"]?["arguments"], #"{"city":"Paris"}"#)
    }

    func testTextCompletionChunksAndGarbageAreHandled() throws {
        var a = StreamAssembler()
        a.add(data: #"{"id":"t","object":"text_completion","choices":[{"index":0,"text":"ab","finish_reason":null}]}"#)
        a.add(data: "not json")
        a.add(data: #"{"id":"t","object":"text_completion","choices":[{"index":0,"text":"c","finish_reason":"length"}]}"#)
        let out = try XCTUnwrap(a.assembled())
        XCTAssertEqual(out["object"], "text_completion")
        XCTAssertEqual(out["choices"]?[0]?["text"], "abc")
        XCTAssertEqual(a.unparsedCount, 1)
        XCTAssertNil(StreamAssembler().assembled())
    }
}
