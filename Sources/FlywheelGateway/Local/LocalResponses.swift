import FlywheelEngine
import FlywheelJSON

/// OpenAI's response shapes for local generations: `chat.completion`, `chat.completion.chunk` and
/// `text_completion`, with the fields the official SDKs read (explicit nulls where OpenAI sends them).
struct LocalResponses: Sendable {
    let chat: Bool
    let id: String
    let model: String
    let created: Int64
    /// Whether stream chunks carry `"usage": null` (`stream_options.include_usage`).
    let includeUsageField: Bool
    /// A text chunk's SSE frame around its JSON-escaped text: id, model and created never change within a
    /// stream, so they are rendered once instead of building and serializing a JSON tree per token.
    private let textChunkPrefix: [UInt8]
    private let textChunkSuffix: [UInt8]

    init(chat: Bool, requestID: String, model: String, createdAtMillis: Int64, includeUsageField: Bool = false) {
        self.chat = chat
        self.id = (chat ? "chatcmpl-" : "cmpl-") + requestID
        self.model = model
        self.created = createdAtMillis / 1000
        self.includeUsageField = includeUsageField
        var prefix: [UInt8] = Array("data: {\"id\":".utf8)
        JSON.writeString(id, into: &prefix)
        prefix += Array(",\"object\":\"\(chat ? "chat.completion.chunk" : "text_completion")\",\"created\":\(created),\"model\":".utf8)
        JSON.writeString(model, into: &prefix)
        prefix += Array(",\"system_fingerprint\":null,\"choices\":[{".utf8)
        prefix += Array((chat ? "\"index\":0,\"delta\":{\"content\":" : "\"text\":").utf8)
        var suffix: [UInt8] = Array((chat ? "}," : ",\"index\":0,").utf8)
        suffix += Array("\"logprobs\":null,\"finish_reason\":null}]".utf8)
        if includeUsageField { suffix += Array(",\"usage\":null".utf8) }
        suffix += Array("}\n\n".utf8)
        textChunkPrefix = prefix
        textChunkSuffix = suffix
    }

    /// The SSE frame of one chunk carrying `text` (no role, no finish reason): the per-token hot path.
    /// Byte for byte what `ServerSentEvents.encode(data: chunk(text:).serializedString())` gives.
    func textChunkFrame(_ text: String) -> [UInt8] {
        var frame = textChunkPrefix
        frame.reserveCapacity(textChunkPrefix.count + text.utf8.count + 8 + textChunkSuffix.count)
        JSON.writeString(text, into: &frame)
        frame += textChunkSuffix
        return frame
    }

    static func usage(_ summary: GenerationSummary) -> JSON {
        [
            "prompt_tokens": .int(Int64(summary.promptTokens)),
            "completion_tokens": .int(Int64(summary.completionTokens)),
            "total_tokens": .int(Int64(summary.promptTokens + summary.completionTokens)),
            "prompt_tokens_details": ["cached_tokens": .int(Int64(summary.cachedPromptTokens))],
        ]
    }

    /// The whole answer of a non-streamed request (also what the log keeps for a stream).
    func completion(text: String, summary: GenerationSummary) -> JSON {
        let choice: JSON = chat
            ? ["index": 0, "message": ["role": "assistant", "content": .string(text), "refusal": .null],
               "logprobs": .null, "finish_reason": .string(summary.finishReason.rawValue)]
            : ["text": .string(text), "index": 0, "logprobs": .null, "finish_reason": .string(summary.finishReason.rawValue)]
        return [
            "id": .string(id), "object": .string(chat ? "chat.completion" : "text_completion"),
            "created": .int(created), "model": .string(model), "system_fingerprint": .null,
            "choices": [choice], "usage": Self.usage(summary),
        ]
    }

    /// What a generation cut short had produced, as the log keeps it (no usage, no finish reason).
    func partialCompletion(text: String) -> JSON {
        let choice: JSON = chat
            ? ["index": 0, "message": ["role": "assistant", "content": .string(text), "refusal": .null],
               "logprobs": .null, "finish_reason": .null]
            : ["text": .string(text), "index": 0, "logprobs": .null, "finish_reason": .null]
        return [
            "id": .string(id), "object": .string(chat ? "chat.completion" : "text_completion"),
            "created": .int(created), "model": .string(model), "system_fingerprint": .null, "choices": [choice],
        ]
    }

    /// One stream chunk. `text` nil with `role` sends the opening delta; `finish` closes the choice.
    func chunk(text: String?, role: Bool = false, finish: FinishReason? = nil) -> JSON {
        var choice: JSON
        if chat {
            var delta = JSONObject()
            if role { delta["role"] = "assistant" }
            if let text { delta["content"] = .string(text) }
            choice = ["index": 0, "delta": .object(delta), "logprobs": .null, "finish_reason": .optional(finish?.rawValue)]
        } else {
            choice = ["text": .string(text ?? ""), "index": 0, "logprobs": .null, "finish_reason": .optional(finish?.rawValue)]
        }
        var object: JSON = [
            "id": .string(id), "object": .string(chat ? "chat.completion.chunk" : "text_completion"),
            "created": .int(created), "model": .string(model), "system_fingerprint": .null, "choices": [choice],
        ]
        // With include_usage, OpenAI sends "usage": null on every chunk before the last.
        if includeUsageField, case .object(var fields) = object {
            fields["usage"] = .null
            object = .object(fields)
        }
        return object
    }

    /// The extra last chunk `stream_options.include_usage` asks for: no choices, the usage.
    func usageChunk(_ summary: GenerationSummary) -> JSON {
        [
            "id": .string(id), "object": .string(chat ? "chat.completion.chunk" : "text_completion"),
            "created": .int(created), "model": .string(model), "system_fingerprint": .null,
            "choices": [], "usage": Self.usage(summary),
        ]
    }
}
