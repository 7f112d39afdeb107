import FlywheelJSON

/// Rebuilds the one response object a streamed completion amounts to, from its SSE `data:` payloads, so the
/// log holds the same shape for streams as for plain responses: `chat.completion` from
/// `chat.completion.chunk`s, `text_completion` from text chunks. Not thread-safe: one stream, one owner.
public struct StreamAssembler {
    private struct ToolCall {
        var id: String?
        var type: String?
        var name = ""
        var arguments = ""
    }
    private struct Choice {
        var role: String?
        var content = ""
        var hasContent = false
        var refusal: String?
        var toolCalls: [Int: ToolCall] = [:]
        var finishReason: JSON = .null
        var text = ""
    }

    private var id: JSON = .null
    private var created: JSON = .null
    private var model: JSON = .null
    private var systemFingerprint: JSON?
    private var choices: [Int: Choice] = [:]
    private var isTextCompletion = false
    public private(set) var usage: JSON?
    /// An `{"error":...}` object the upstream sent inside the stream.
    public private(set) var streamError: JSON?
    public private(set) var sawDone = false
    public private(set) var chunkCount = 0
    /// Payloads that were not JSON; they are passed to the client unchanged but cannot be assembled.
    public private(set) var unparsedCount = 0
    /// Set by the first chunk that carries output: text, content, a refusal or a tool call (a role alone is not).
    public private(set) var producedOutput = false

    public init() {}

    /// Feeds one event's data payload (without the `data: ` prefix).
    public mutating func add(data: String) {
        if data == "[DONE]" { sawDone = true; return }
        guard let chunk = try? JSONParser.parse(data, limits: .depthOnly), case .object(let obj) = chunk else {
            unparsedCount += 1
            return
        }
        chunkCount += 1
        if let err = obj["error"] { streamError = err; return }
        if let v = obj["id"], id == .null { id = v }
        if let v = obj["created"], created == .null { created = v }
        if let v = obj["model"], model == .null { model = v }
        if let v = obj["system_fingerprint"], v != .null { systemFingerprint = v }
        if obj["object"]?.stringValue == "text_completion" { isTextCompletion = true }
        if let u = obj["usage"], u != .null { usage = u }
        for c in obj["choices"]?.arrayValue ?? [] {
            let index = c["index"]?.intValue ?? 0
            var choice = choices[index] ?? Choice()
            if let text = c["text"]?.stringValue { choice.text += text; if !text.isEmpty { producedOutput = true } }
            if let delta = c["delta"]?.objectValue {
                if let role = delta["role"]?.stringValue { choice.role = role }
                if let content = delta["content"]?.stringValue {
                    choice.content += content; choice.hasContent = true
                    if !content.isEmpty { producedOutput = true }
                }
                if let refusal = delta["refusal"]?.stringValue {
                    choice.refusal = (choice.refusal ?? "") + refusal
                    if !refusal.isEmpty { producedOutput = true }
                }
                if delta["tool_calls"]?.arrayValue?.isEmpty == false { producedOutput = true }
                for call in delta["tool_calls"]?.arrayValue ?? [] {
                    let ti = call["index"]?.intValue ?? 0
                    var tc = choice.toolCalls[ti] ?? ToolCall()
                    if let id = call["id"]?.stringValue { tc.id = id }
                    if let type = call["type"]?.stringValue { tc.type = type }
                    if let name = call["function"]?["name"]?.stringValue { tc.name += name }
                    if let args = call["function"]?["arguments"]?.stringValue { tc.arguments += args }
                    choice.toolCalls[ti] = tc
                }
            }
            if let fr = c["finish_reason"], fr != .null { choice.finishReason = fr }
            choices[index] = choice
        }
    }

    /// The model the upstream reported in its chunks.
    public var servedModel: String? { model.stringValue }

    /// The assembled response object, or nil when no chunk parsed.
    public func assembled() -> JSON? {
        guard chunkCount > 0 else { return nil }
        var out = JSONObject()
        out["id"] = id
        out["object"] = .string(isTextCompletion ? "text_completion" : "chat.completion")
        out["created"] = created
        out["model"] = model
        if let systemFingerprint { out["system_fingerprint"] = systemFingerprint }
        out["choices"] = .array(choices.keys.sorted().map { index in
            let c = choices[index]!
            if isTextCompletion {
                return ["index": .int(Int64(index)), "text": .string(c.text), "logprobs": .null, "finish_reason": c.finishReason]
            }
            var message = JSONObject()
            message["role"] = .string(c.role ?? "assistant")
            message["content"] = c.hasContent || c.toolCalls.isEmpty ? .string(c.content) : .null
            if let refusal = c.refusal { message["refusal"] = .string(refusal) }
            if !c.toolCalls.isEmpty {
                message["tool_calls"] = .array(c.toolCalls.keys.sorted().map { ti in
                    let tc = c.toolCalls[ti]!
                    return ["id": .optional(tc.id), "type": .string(tc.type ?? "function"),
                            "function": ["name": .string(tc.name), "arguments": .string(tc.arguments)]]
                })
            }
            return ["index": .int(Int64(index)), "message": .object(message), "logprobs": .null, "finish_reason": c.finishReason]
        })
        if let usage { out["usage"] = usage }
        if let streamError { out["error"] = streamError }
        return .object(out)
    }
}
