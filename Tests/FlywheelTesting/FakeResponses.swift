import FlywheelHTTP
import FlywheelJSON

/// The fake upstream's OpenAI bodies, computed from the request alone.
enum FakeResponses {
    static let eventStreamHeaders: HTTPHeaders = ["Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                                  "x-request-id": "fake-upstream-request"]

    static func json(_ body: JSON, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json", "x-request-id": "fake-upstream-request"],
                     body: body.serialized())
    }

    static func event(_ data: JSON) -> [UInt8] { ServerSentEvents.encode(data: data.serializedString()) }
    static let done = ServerSentEvents.encode(data: "[DONE]")

    static func words(_ text: String) -> [Substring] { text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) }

    /// A message's `content` as text: a string, or the text parts of an array.
    static func text(of content: JSON?) -> String {
        if let s = content?.stringValue { return s }
        return (content?.arrayValue ?? []).compactMap { $0["text"]?.stringValue }.joined(separator: " ")
    }

    static func usage(prompt: Int, completion: Int) -> JSON {
        ["prompt_tokens": .int(Int64(prompt)), "completion_tokens": .int(Int64(completion)), "total_tokens": .int(Int64(prompt + completion))]
    }

    /// What an echo of `reply` looks like: the words, one chunk each, with the spaces that join them.
    static func pieces(_ reply: String) -> [String] {
        let parts = words(reply)
        return parts.enumerated().map { index, word in index + 1 < parts.count ? word + " " : String(word) }
    }

    /// `/v1/chat/completions`.
    struct Chat: Sendable {
        let model: String
        let reply: String
        let promptWords: Int
        let stream: Bool
        let includeUsage: Bool

        init(_ request: HTTPRequest) {
            let body = try? JSONParser.parse(request.body)
            model = body?["model"]?.stringValue ?? "fake-model"
            let messages = body?["messages"]?.arrayValue ?? []
            promptWords = messages.reduce(0) { $0 + FakeResponses.words(FakeResponses.text(of: $1["content"])).count }
            let lastUser = messages.last { $0["role"]?.stringValue == "user" }
            reply = FakeResponses.words(FakeResponses.text(of: lastUser?["content"])).joined(separator: " ")
            stream = body?["stream"]?.boolValue == true
            includeUsage = body?["stream_options"]?["include_usage"]?.boolValue == true
        }

        var usage: JSON { FakeResponses.usage(prompt: promptWords, completion: FakeResponses.words(reply).count) }

        func chunk(delta: JSON, finishReason: String? = nil) -> JSON {
            ["id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": .string(model),
             "choices": [["index": 0, "delta": delta, "finish_reason": .optional(finishReason)]]]
        }

        func answer(_ writer: HTTPResponseWriter) {
            guard stream else {
                let message: JSON = ["role": "assistant", "content": .string(reply)]
                return writer.send(FakeResponses.json([
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": .string(model),
                    "choices": [["index": 0, "message": message, "finish_reason": "stop"]], "usage": usage,
                ]))
            }
            writer.startStream(status: 200, headers: FakeResponses.eventStreamHeaders)
            writer.write(FakeResponses.event(chunk(delta: ["role": "assistant", "content": ""])))
            for piece in FakeResponses.pieces(reply) {
                writer.write(FakeResponses.event(chunk(delta: ["content": .string(piece)])))
            }
            writer.write(FakeResponses.event(chunk(delta: [:], finishReason: "stop")))
            if includeUsage {
                writer.write(FakeResponses.event(["id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                                                  "model": .string(model), "choices": [], "usage": usage]))
            }
            writer.write(FakeResponses.done)
            writer.endStream()
        }
    }

    /// `/v1/completions`.
    struct Completion: Sendable {
        let model: String
        let prompt: String
        let stream: Bool
        let includeUsage: Bool

        init(_ request: HTTPRequest) {
            let body = try? JSONParser.parse(request.body)
            model = body?["model"]?.stringValue ?? "fake-model"
            let raw = body?["prompt"]
            prompt = raw?.stringValue ?? raw?.arrayValue?.first?.stringValue ?? ""
            stream = body?["stream"]?.boolValue == true
            includeUsage = body?["stream_options"]?["include_usage"]?.boolValue == true
        }

        var usage: JSON {
            let count = FakeResponses.words(prompt).count
            return FakeResponses.usage(prompt: count, completion: count)
        }

        func object(text: String, finishReason: String?, withUsage: Bool) -> JSON {
            let object: JSON = ["id": "cmpl-fake", "object": "text_completion", "created": 0, "model": .string(model),
                                "choices": [["index": 0, "text": .string(text), "logprobs": nil,
                                             "finish_reason": .optional(finishReason)]]]
            guard withUsage, var fields = object.objectValue else { return object }
            fields["usage"] = usage
            return .object(fields)
        }

        func answer(_ writer: HTTPResponseWriter) {
            let reply = FakeResponses.words(prompt).joined(separator: " ")
            guard stream else { return writer.send(FakeResponses.json(object(text: reply, finishReason: "stop", withUsage: true))) }
            writer.startStream(status: 200, headers: FakeResponses.eventStreamHeaders)
            for piece in FakeResponses.pieces(reply) {
                writer.write(FakeResponses.event(object(text: piece, finishReason: nil, withUsage: false)))
            }
            writer.write(FakeResponses.event(object(text: "", finishReason: "stop", withUsage: false)))
            if includeUsage {
                writer.write(FakeResponses.event(["id": "cmpl-fake", "object": "text_completion", "created": 0,
                                                  "model": .string(model), "choices": [], "usage": usage]))
            }
            writer.write(FakeResponses.done)
            writer.endStream()
        }
    }

    /// `/v1/embeddings`: `[words, bytes, 0.5]` per input.
    static func embeddings(_ request: HTTPRequest) -> HTTPResponse {
        let body = try? JSONParser.parse(request.body)
        let model = body?["model"]?.stringValue ?? "fake-model"
        let raw = body?["input"]
        let inputs = raw?.arrayValue?.compactMap(\.stringValue) ?? raw.flatMap(\.stringValue).map { [$0] } ?? []
        var total = 0
        var data: [JSON] = []
        for (index, input) in inputs.enumerated() {
            let count = words(input).count
            total += count
            data.append(["object": "embedding", "index": .int(Int64(index)),
                         "embedding": [.double(Double(count)), .double(Double(input.utf8.count)), 0.5]])
        }
        return json(["object": "list", "data": .array(data), "model": .string(model),
                     "usage": ["prompt_tokens": .int(Int64(total)), "total_tokens": .int(Int64(total))]])
    }
}
