/// One generation to run: a tokenized prompt and how to continue it.
public struct GenerationRequest: Sendable {
    public var promptTokens: [Int32]
    /// The most tokens to generate; nil runs until an end token, a stop string or the context is full.
    public var maxTokens: Int?
    public var sampling: SamplingParameters
    /// Generation ends before any of these strings; they are not part of the output.
    public var stop: [String]
    /// Whether `maxTokens` may shrink to what the scheduler's KV cache budget holds (it was a default, not the
    /// client's): such a request ends with `length` where the budget does, instead of being refused.
    public var maxTokensFitsBudget = false

    public init(promptTokens: [Int32], maxTokens: Int? = nil, sampling: SamplingParameters = SamplingParameters(), stop: [String] = []) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stop = stop
    }
}

/// Why a generation ended, in OpenAI's terms.
public enum FinishReason: String, Sendable {
    /// An end-of-generation token or a stop string.
    case stop
    /// `max_tokens` reached, or the context is full.
    case length
}

/// Counts and timings of a finished generation.
public struct GenerationSummary: Sendable {
    public var finishReason: FinishReason
    public var promptTokens: Int
    /// Prompt tokens that were already cached from an earlier request and not evaluated again.
    public var cachedPromptTokens: Int
    public var completionTokens: Int
    /// Seconds waiting for a free slot.
    public var queueSeconds: Double
    /// Seconds evaluating the prompt (the uncached part).
    public var promptSeconds: Double
    /// Seconds from the first generated token to the end.
    public var decodeSeconds: Double
    /// The sampling seed used (reported so a run can be reproduced).
    public var seed: UInt64
    /// Milliseconds between consecutive generated tokens (one fewer than the tokens sampled), for latency figures.
    public var tokenGapsMilliseconds: [Float] = []

    /// Prompt tokens evaluated per second.
    public var promptTokensPerSecond: Double {
        promptSeconds > 0 ? Double(promptTokens - cachedPromptTokens) / promptSeconds : 0
    }
    /// Generated tokens per second after the first.
    public var decodeTokensPerSecond: Double {
        decodeSeconds > 0 && completionTokens > 1 ? Double(completionTokens - 1) / decodeSeconds : 0
    }
}

/// What the scheduler reports about one generation, in order, on the scheduler thread:
/// `text` zero or more times, then exactly one of `finished` or `failed`. (A generation cancelled
/// while still queued reports only `failed(.cancelled)`, on the thread that cancelled it.)
public enum GenerationEvent: Sendable {
    /// New output text (never part of a stop string).
    case text(String)
    case finished(GenerationSummary)
    case failed(GenerationError)
}

/// Why a generation could not run or did not finish.
public enum GenerationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The prompt has no tokens: there is nothing to continue from.
    case emptyPrompt
    /// The prompt (plus at least one generated token) does not fit the context. Callers that know
    /// which request field the tokens came from should check this first and name that field.
    case contextLengthExceeded(promptTokens: Int, contextLength: Int)
    /// Too many generations are waiting already.
    case queueFull(limit: Int)
    /// The caller cancelled (for example the client disconnected).
    case cancelled
    /// The scheduler is shutting down.
    case shuttingDown
    /// The model failed to evaluate (a bug or resource problem, not the caller's fault).
    case evaluationFailed(String)
    /// The generation may hold more KV cache (prompt plus `max_tokens`) than the whole configured budget.
    case cacheBudgetExceeded(tokens: Int, neededBytes: Int, budgetBytes: Int)

    public var description: String {
        switch self {
        case .emptyPrompt:
            return "The prompt is empty; there must be at least one token to continue from."
        case .contextLengthExceeded(let prompt, let context):
            return "This model's maximum context length is \(context) tokens. However, the input is \(prompt) tokens, which leaves no room to generate."
        case .queueFull(let limit):
            return "The local model is busy: \(limit) requests are already waiting. Retry shortly."
        case .cancelled: return "The generation was cancelled."
        case .shuttingDown: return "The local model is shutting down."
        case .evaluationFailed(let message): return "The local model failed: \(message)"
        case .cacheBudgetExceeded(let tokens, let needed, let budget):
            let mb = { (bytes: Int) in (bytes + (1 << 20) - 1) >> 20 }
            return "This request may use \(tokens) tokens of context (prompt plus max_tokens), which need \(mb(needed)) MiB of KV cache; the local model's cache budget is \(mb(budget)) MiB. Lower max_tokens or shorten the prompt."
        }
    }
}
