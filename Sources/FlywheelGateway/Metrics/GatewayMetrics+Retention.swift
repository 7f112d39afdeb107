import Synchronization

/// The log's retention figures, published by the daemon's prune job and the write-time redaction.
public struct LogHygieneFigures: Sendable, Equatable {
    /// Prune passes finished since start.
    public var pruneRuns = 0
    /// Request and feedback rows deleted by them.
    public var prunedRequests = 0
    public var prunedFeedback = 0
    /// When the last pass ended (unix seconds) and how long it took.
    public var lastPruneAt: Double?
    public var lastPruneSeconds: Double?
    /// Replacements made by `log.redact: pii`, by kind; nil when redaction is off.
    public var redactions: [String: Int]?

    public init() {}

    func render(into out: inout String, escape: (String) -> String) {
        func scalar(_ name: String, _ type: String, _ help: String, _ value: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        scalar("flywheel_log_prune_runs_total", "counter", "Retention prune passes finished.", "\(pruneRuns)")
        scalar("flywheel_log_pruned_requests_total", "counter", "Request rows deleted by retention.", "\(prunedRequests)")
        scalar("flywheel_log_pruned_feedback_total", "counter", "Feedback rows deleted with their requests.", "\(prunedFeedback)")
        if let at = lastPruneAt, let seconds = lastPruneSeconds {
            scalar("flywheel_log_prune_last_timestamp_seconds", "gauge", "When the last prune pass ended.", "\(Int(at))")
            scalar("flywheel_log_prune_last_duration_seconds", "gauge", "How long the last prune pass took.", "\(seconds)")
        }
        if let redactions {
            out += "# HELP flywheel_log_redactions_total Personal data and secrets replaced before storing (log.redact), by kind.\n"
            out += "# TYPE flywheel_log_redactions_total counter\n"
            for (kind, count) in redactions.sorted(by: { $0.key < $1.key }) {
                out += "flywheel_log_redactions_total{kind=\"\(escape(kind))\"} \(count)\n"
            }
        }
    }
}
