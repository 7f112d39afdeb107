import FlywheelJSON

/// How one request ended, whatever answered it (an upstream, a local model, or the gateway's own checks):
/// the one value an exchange produces and the ledger turns into the log row and the metrics.
struct RequestOutcome: Sendable {
    /// Who ended the response early, if anyone.
    enum Interruption: Sendable, Equatable {
        /// The client disconnected (logged 499, nginx's "client closed request").
        case clientClosed
        /// The daemon shut down before the response was complete.
        case serverShutdown
    }

    /// The HTTP status the client got (200 for a stream whose head went out, even if it later failed).
    var status: Int
    /// What went wrong, as the log's error columns show it; nil for a success.
    var error: OpenAIError?
    /// The log's error message when it should say more than the client was told (e.g. the upstream's
    /// address in a transport error).
    var errorDetail: String?
    /// The upstream's own `{"error": ...}` payload (from an error body or a stream event), used for the log's
    /// error columns when `error` is nil.
    var upstreamError: JSON?
    var interruption: Interruption?
    /// The response stopped before its end for another reason (the upstream failed mid-stream).
    var cutShort = false
    /// The response as logged: the upstream's bytes, or the assembled stream, or a local answer.
    var responseText: String?
    /// The log's copy of the response was cut at the size cap (the client got everything).
    var responseTruncated = false
    var modelServed: String?
    var usage = TokenUsage()
    /// Upstream endpoint name, or "local".
    var upstream: String?
    var attempts = 0
    /// CLOCK_MONOTONIC nanoseconds of the first response byte (upstream) or the first token (local).
    var firstByteNanos: UInt64?
    /// Time spent waiting on the upstream or the engine, so the rest is the gateway's own overhead.
    var serviceSeconds: Double?

    init(status: Int, error: OpenAIError? = nil) {
        self.status = status
        self.error = error
    }

    /// Token counts as the response reported them.
    struct TokenUsage: Sendable, Equatable {
        var prompt: Int?
        var completion: Int?
        var total: Int?

        init(prompt: Int? = nil, completion: Int? = nil, total: Int? = nil) {
            self.prompt = prompt
            self.completion = completion
            self.total = total
        }

        /// Reads OpenAI's `usage` object. Counts come from the upstream: anything that is not a count (negative,
        /// beyond a trillion) is treated as unknown rather than trusted into arithmetic.
        init(json usage: JSON?) {
            func count(_ key: String) -> Int? {
                guard let n = usage?[key]?.intValue, (0...Self.maxCount).contains(n) else { return nil }
                return n
            }
            prompt = count("prompt_tokens")
            completion = count("completion_tokens")
            total = count("total_tokens")
        }

        static let maxCount = 1_000_000_000_000

        /// Prompt plus completion, when both are known.
        var sum: Int? {
            guard let prompt, let completion else { return nil }
            let (total, overflow) = prompt.addingReportingOverflow(completion)
            return overflow ? nil : total
        }
    }
}
