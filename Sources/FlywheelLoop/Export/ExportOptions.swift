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
    /// Remove exact duplicates (and, with `nearDuplicateThreshold`, near ones).
    public var deduplicate = true
    /// Jaccard similarity of word 5-grams above which a line counts as a near-duplicate of an earlier one
    /// (system prompts and tool definitions left out); nil keeps near-duplicates.
    public var nearDuplicateThreshold: Double? = 0.8
    /// The most memory the near-duplicate index may take; past it, lines are checked but no longer indexed.
    public var nearDuplicateMemory = 64 << 20
    /// Share of prompts (by a hash of the prompt, so one prompt never lands in both) in the validation file.
    public var validationFraction = 0.1
    /// Prompts kept apart as a golden set (the ones with the lowest prompt hashes: the same every run).
    public var holdout = 0
    /// Preference pairs from rejections: how many accepted answers and how many rejected ones wait in memory for
    /// their other half (the rest is counted in the manifest, never held).
    public var preferenceBuffer = 100_000
    /// Each line names the request it came from (`flywheel_request_id`).
    public var lineage = true

    public init(format: Format) { self.format = format }
}
