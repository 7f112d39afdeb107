import ArgumentParser
import Foundation
import FlywheelLoop
import FlywheelStore

/// The options `drift` and `outliers` share: a baseline (an export or a past log window), the recent window,
/// and which requests of the log.
struct DriftSelection: ParsableArguments {
    @Option(name: .long, help: "An export file (sft, dpo or dpo-trl lines) the model was trained on.")
    var baseline: String?

    @Option(name: .long, help: "A past window of the log as the baseline: SINCE[..UNTIL].")
    var baselineWindow: String?

    @Option(name: .long, help: "The recent traffic: SINCE[..UNTIL].")
    var window: String = "24h"

    @Option(name: .long, help: "SQLite log file.")
    var db: String = "flywheel.db"

    @Option(name: .long, help: "Only requests for this model (requested or served).")
    var model: String?

    @Option(name: .long, help: "Only requests carrying this tag.")
    var tag: String?

    func validate() throws {
        guard (baseline != nil) != (baselineWindow != nil) else { throw ValidationError("give --baseline FILE or --baseline-window RANGE (one of them)") }
    }

    /// The requests these options select (a command may narrow it further).
    /// `flywheel eval`'s own requests are golden-set replays, not traffic: left out.
    var filter: RequestFilter {
        var filter = RequestFilter(model: model, tag: tag)
        filter.excludedTags = RequestFilter.evaluationTags
        return filter
    }

    /// The baseline's and the window's observations, each a uniform sample of its cap; a time range that cannot
    /// be read is a usage error.
    func load(_ filter: RequestFilter, baselineCap: Int, cap: Int, tokenize: ((String) -> [Int32])? = nil, now: Date = Date())
        throws -> (baseline: (observations: [DriftObservation], total: Int, skipped: Int), window: (observations: [DriftObservation], total: Int)) {
        let reader = try LogSelection.openReader(path: db)
        do {
            let base = try DriftSource.baseline(file: baseline, window: baselineWindow, queries: reader, filter: filter, now: now,
                                                cap: baselineCap, tokenize: tokenize)
            let current = try DriftSource.log(reader, filter: filter, range: window, now: now, cap: cap, tokenize: tokenize)
            return (base, current)
        } catch let error as TimeExpression.Problem {
            throw ValidationError("\(error)")
        }
    }
}
