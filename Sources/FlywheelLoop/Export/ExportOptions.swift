import FlywheelStore

/// What `flywheel export` writes and which logged requests it takes.
public struct ExportOptions: Sendable {
    public enum Format: String, Sendable, CaseIterable {
        /// Chat fine-tuning JSONL: `{"messages": [...], "tools"?}` (OpenAI, Together, Fireworks, TRL's SFT trainer).
        case sft
        /// OpenAI's preference shape: `input`, `preferred_output`, `non_preferred_output`.
        case dpo
        /// TRL's conversational preference shape: `prompt`, `chosen`, `rejected`.
        case dpoTRL = "dpo-trl"
    }

    public var format: Format
    public var filter = RequestFilter()
    /// Keep only requests whose latest verdict is `accepted`.
    public var acceptedOnly = false
    /// Leave out requests whose latest verdict is `rejected`.
    public var excludeRejected = false
    /// Keep only requests with a correction (`edited`).
    public var correctedOnly = false
    /// Keep only requests whose mean score is at least this.
    public var minScore: Double?
    /// Keep only requests with feedback whose weight is at least this.
    public var minWeight: Double?
    /// An edited answer replaces the logged one (SFT).
    public var applyCorrections = false
    /// Also take answers of the `local` route (by default only the frontier's answers are training data).
    public var includeLocal = false
    /// Also take failed, incomplete and truncated requests.
    public var includeFailed = false
    public var scrubPII = true
    public var deduplicate = true
    /// Share of prompts (by a hash of the prompt, so one prompt never lands in both) in the validation file.
    public var validationFraction = 0.1
    /// Prompts kept apart as a golden set (the ones with the lowest prompt hashes: the same every run).
    public var holdout = 0
    /// Each line names the request it came from (`flywheel_request_id`).
    public var lineage = true

    public init(format: Format) { self.format = format }
}
