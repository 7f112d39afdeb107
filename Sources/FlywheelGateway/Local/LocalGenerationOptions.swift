import FlywheelEngine
import FlywheelJSON

/// The OpenAI request fields that steer a local generation, read and checked before anything runs.
///
/// Accepted: `max_tokens` / `max_completion_tokens`, `temperature`, `top_p`, `seed`, `stop`,
/// `frequency_penalty`, `presence_penalty`, `logit_bias`, `n` (1 only), `stream`,
/// `stream_options.include_usage`, and the extensions llama.cpp's server and vLLM accept:
/// `top_k`, `min_p`, `repetition_penalty` (alias `repeat_penalty`). Fields a local model cannot
/// honour (`logprobs`, `n > 1`, JSON or schema `response_format`, forced `tool_choice`) are refused
/// with a 400 naming the field rather than silently ignored.
struct LocalGenerationOptions {
    var maxTokens: Int?
    /// Whether `maxTokens` is the gateway's default rather than the client's: a default may shrink to what the KV
    /// cache budget holds instead of refusing the request.
    var maxTokensIsDefault = false
    var sampling = SamplingParameters()
    var stop: [String] = []
    var stream = false
    var includeUsage = false

    /// OpenAI accepts up to 4 stop sequences; we allow a few more, each of bounded length.
    static let maxStops = 16
    static let maxStopLength = 512

    init(_ object: JSONObject, chat: Bool, maxTokensLimit: Int) throws(OpenAIError) {
        func number(_ key: String) throws(OpenAIError) -> Double? {
            guard let value = object[key], value != .null else { return nil }
            guard let d = value.doubleValue, d.isFinite else {
                throw .invalidRequest("'\(key)' must be a number.", param: key)
            }
            return d
        }
        func integer(_ key: String) throws(OpenAIError) -> Int? {
            guard let value = object[key], value != .null else { return nil }
            guard let i = value.intValue else { throw .invalidRequest("'\(key)' must be an integer.", param: key) }
            return i
        }

        let maxKey = chat && object["max_completion_tokens"] != nil ? "max_completion_tokens" : "max_tokens"
        if let m = try integer(maxKey) {
            guard m >= 1 else { throw .invalidRequest("'\(maxKey)' must be at least 1.", param: maxKey) }
            guard m <= maxTokensLimit else {
                throw .invalidRequest("'\(maxKey)' is \(m); this gateway allows at most \(maxTokensLimit) for local models.", param: maxKey, code: OpenAIError.localModelLimit)
            }
            maxTokens = m
        } else {
            // OpenAI's legacy completions default to 16 tokens; chat runs until the model stops.
            maxTokens = chat ? maxTokensLimit : 16
            maxTokensIsDefault = true
        }
        if let n = try integer("n"), n != 1 {
            throw .invalidRequest("Local models generate one choice per request; 'n' must be 1.", param: "n", code: OpenAIError.localModelLimit)
        }
        if let t = try number("temperature") { sampling.temperature = Float(t) }
        if let p = try number("top_p") { sampling.topP = Float(p) }
        if let k = try integer("top_k") { sampling.topK = k }
        if let p = try number("min_p") { sampling.minP = Float(p) }
        if let f = try number("frequency_penalty") { sampling.frequencyPenalty = Float(f) }
        if let p = try number("presence_penalty") { sampling.presencePenalty = Float(p) }
        let repetition = try number("repetition_penalty")
        let repeatAlias = try number("repeat_penalty")
        if let r = repetition ?? repeatAlias { sampling.repetitionPenalty = Float(r) }
        if let seed = object["seed"], seed != .null {
            guard case .int(let s) = seed else { throw .invalidRequest("'seed' must be an integer.", param: "seed") }
            sampling.seed = UInt64(bitPattern: s)
        }
        if let bias = object["logit_bias"], bias != .null {
            guard case .object(let entries) = bias else {
                throw .invalidRequest("'logit_bias' must map token ids to numbers.", param: "logit_bias")
            }
            for (key, value) in entries {
                guard let id = Int32(key), id >= 0, let b = value.doubleValue else {
                    throw .invalidRequest("'logit_bias' keys must be token ids and values numbers; got '\(key)'.", param: "logit_bias")
                }
                sampling.logitBias[id] = Float(b)
            }
        }
        if let problem = sampling.validationError() {
            throw .invalidRequest(problem.message, param: problem.parameter)
        }

        switch object["stop"] {
        case nil, .null?: break
        case .string(let s)?: stop = [s]
        case .array(let items)?:
            for item in items {
                guard let s = item.stringValue else { throw .invalidRequest("'stop' must be a string or an array of strings.", param: "stop") }
                stop.append(s)
            }
        default: throw .invalidRequest("'stop' must be a string or an array of strings.", param: "stop")
        }
        guard stop.count <= Self.maxStops else {
            throw .invalidRequest("'stop' may hold at most \(Self.maxStops) sequences.", param: "stop")
        }
        guard stop.allSatisfy({ $0.utf8.count <= Self.maxStopLength }) else {
            throw .invalidRequest("Each 'stop' sequence may be at most \(Self.maxStopLength) bytes.", param: "stop")
        }

        stream = object["stream"]?.boolValue == true
        if let options = object["stream_options"], options != .null {
            guard stream else {
                throw .invalidRequest("'stream_options' is only allowed when 'stream' is true.", param: "stream_options")
            }
            includeUsage = options["include_usage"]?.boolValue == true
        }

        if let logprobs = object["logprobs"], logprobs != .null, logprobs != .bool(false) {
            throw .invalidRequest("'logprobs' is not supported by local models yet.", param: "logprobs", code: OpenAIError.localModelLimit)
        }
        if let format = object["response_format"]?["type"]?.stringValue, format != "text" {
            throw .invalidRequest("'response_format' \(format) is not supported by local models; only 'text'.", param: "response_format", code: OpenAIError.localModelLimit)
        }
        if let choice = object["tool_choice"], choice != .null, choice != .string("auto"), choice != .string("none") {
            throw .invalidRequest("Local models cannot be forced to call a tool; 'tool_choice' must be 'auto' or 'none'.", param: "tool_choice", code: OpenAIError.localModelLimit)
        }
    }
}
