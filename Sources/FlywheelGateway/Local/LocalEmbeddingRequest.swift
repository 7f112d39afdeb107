import FlywheelJSON

/// A `/v1/embeddings` request for a local model, checked: `input` in one of OpenAI's four forms (a string, an
/// array of strings, an array of token ids, an array of token-id arrays), `encoding_format` and `dimensions`.
/// `user` is only logged. Every refusal is a 400 naming the field (and the input's index).
struct LocalEmbeddingRequest: Sendable, Equatable {
    enum Encoding: String, Sendable {
        /// JSON numbers.
        case float
        /// Each vector as base64 of its little-endian float32 bytes (what the openai SDKs ask for by default).
        case base64
    }

    enum Input: Sendable, Equatable {
        case texts([String])
        case tokens([[Int32]])
    }

    let input: Input
    let encoding: Encoding
    /// Whether `input` was one string or one token array, so errors name `input` rather than `input[0]`.
    let single: Bool

    /// Inputs per request, as OpenAI allows.
    static let maxInputs = 2048
    /// Tokens per request over all inputs, as OpenAI allows.
    static let maxTotalTokens = 300_000

    static let shapeError = OpenAIError.invalidRequest(
        "'input' must be a string, an array of strings, an array of token ids, or an array of token-id arrays.", param: "input")

    /// Reads the fields. `width` is the model's embedding size: `dimensions` is accepted only when it equals it
    /// (mean pooling cannot shorten a vector; another target may, so that refusal lets a policy fall back).
    init(_ object: JSONObject, width: Int, vocabularySize: Int) throws(OpenAIError) {
        switch object["encoding_format"] {
        case nil, .null?: encoding = .float
        case .string(let s)? where Encoding(rawValue: s) != nil: encoding = Encoding(rawValue: s)!
        default:
            throw .invalidRequest("'encoding_format' must be 'float' or 'base64'.", param: "encoding_format")
        }
        switch object["dimensions"] {
        case nil, .null?: break
        case let value?:
            guard let n = value.intValue, n > 0 else {
                throw .invalidRequest("'dimensions' must be a positive integer.", param: "dimensions")
            }
            guard n == width else {
                throw .invalidRequest(
                    "'dimensions' is not supported by this local model: its embeddings are mean-pooled hidden states of \(width) dimensions and cannot be shortened. Omit 'dimensions' (or send \(width)).",
                    param: "dimensions", code: OpenAIError.localModelLimit)
            }
        }
        (input, single) = try Self.readInput(object["input"], vocabularySize: vocabularySize)
    }

    private static func readInput(_ value: JSON?, vocabularySize: Int) throws(OpenAIError) -> (Input, Bool) {
        switch value {
        case .string(let text)?:
            guard !text.isEmpty else { throw .invalidRequest("'input' is an empty string; send at least one character.", param: "input") }
            return (.texts([text]), true)
        case .array(let items)?:
            guard !items.isEmpty else { throw .invalidRequest("'input' is an empty array; send at least one input.", param: "input") }
            switch items[0] {
            case .string:
                guard items.count <= maxInputs else { throw tooMany(items.count) }
                var texts: [String] = []
                texts.reserveCapacity(items.count)
                for (i, item) in items.enumerated() {
                    guard case .string(let text) = item else { throw shapeError }
                    guard !text.isEmpty else {
                        throw .invalidRequest("'input[\(i)]' is an empty string; every input needs at least one character.", param: "input[\(i)]")
                    }
                    texts.append(text)
                }
                return (.texts(texts), false)
            case .array:
                guard items.count <= maxInputs else { throw tooMany(items.count) }
                var inputs: [[Int32]] = []
                inputs.reserveCapacity(items.count)
                for (i, item) in items.enumerated() {
                    guard case .array(let ids) = item else { throw shapeError }
                    guard !ids.isEmpty else {
                        throw .invalidRequest("'input[\(i)]' is an empty array; every input needs at least one token.", param: "input[\(i)]")
                    }
                    inputs.append(try tokenIDs(ids, param: "input[\(i)]", vocabularySize: vocabularySize))
                }
                return (.tokens(inputs), false)
            case .int, .double:
                // One input given as token ids (a list of numbers is never a batch of inputs).
                return (.tokens([try tokenIDs(items, param: "input", vocabularySize: vocabularySize)]), true)
            default:
                throw shapeError
            }
        case nil:
            throw .invalidRequest("Missing required parameter: 'input'.", param: "input", code: "missing_required_parameter")
        default:
            throw shapeError
        }
    }

    private static func tooMany(_ count: Int) -> OpenAIError {
        .invalidRequest("'input' has \(count) items; at most \(maxInputs) inputs are allowed per request.", param: "input")
    }

    private static func tokenIDs(_ items: [JSON], param: String, vocabularySize: Int) throws(OpenAIError) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(items.count)
        for item in items {
            switch item {
            case .int, .double:
                guard let id = item.intValue else {
                    throw .invalidRequest("'\(param)' must contain whole-number token ids; \(item.serializedString()) is not one.", param: param)
                }
                guard id >= 0, id < vocabularySize else {
                    throw .invalidRequest("'\(param)' has token id \(id), but this model's token ids are in 0..<\(vocabularySize).", param: param)
                }
                ids.append(Int32(id))
            default:
                throw shapeError
            }
        }
        return ids
    }

    /// The text inputs' total UTF-8 bytes (0 for token inputs): large ones are tokenized off the event loop.
    var textBytes: Int {
        guard case .texts(let texts) = input else { return 0 }
        return texts.reduce(0) { $0 + $1.utf8.count }
    }

    /// The inputs as token ids: texts through `textPrompt` (the model's tokenizer, BOS as it asks), checked
    /// against the model's context (each input) and the per-request total.
    func tokens(textPrompt: (String) -> [Int32], contextLength: Int) throws(OpenAIError) -> [[Int32]] {
        let inputs: [[Int32]]
        switch input {
        case .tokens(let ids): inputs = ids
        case .texts(let texts): inputs = texts.map(textPrompt)
        }
        var total = 0
        for (i, tokens) in inputs.enumerated() {
            let param = single ? "input" : "input[\(i)]"
            guard !tokens.isEmpty else {
                throw .invalidRequest("'\(param)' has no tokens; send at least one.", param: param)
            }
            guard tokens.count <= contextLength else {
                throw .invalidRequest(
                    "This model's maximum context length is \(contextLength) tokens, however you requested \(tokens.count) tokens in '\(param)'. Please reduce the length of the input.",
                    param: param, code: "context_length_exceeded")
            }
            total += tokens.count
        }
        guard total <= Self.maxTotalTokens else {
            throw .invalidRequest("Requested \(total) tokens, max \(Self.maxTotalTokens) tokens per request.",
                                  param: "input", code: "max_tokens_per_request")
        }
        return inputs
    }
}
