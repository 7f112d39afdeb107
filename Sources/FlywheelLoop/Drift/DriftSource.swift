import Foundation
import FlywheelJSON
import FlywheelStore

/// Where drift observations come from: an export file (what the model was trained on) or a window of the log.
/// Both are read as streams into a seeded reservoir sample, so memory stays bounded whatever their size.
public enum DriftSource {
    /// Observations of an export file's lines (`sft`, `dpo`, `dpo-trl`); lines that cannot be used are counted.
    public static func export(path: String, cap: Int, seed: UInt64 = 7,
                              tokenize: ((String) -> [Int32])? = nil) throws -> (observations: [DriftObservation], total: Int, skipped: Int) {
        var reservoir = Reservoir<DriftObservation>(cap: cap, seed: seed)
        var skipped = 0
        try JSONLLines.forEach(path: path, maxLineBytes: EvalDataset.maxLineBytes) { _, bytes in
            guard let bytes, let line = try? JSONParser.parse(bytes, limits: .depthOnly),
                  let item = try? EvalDataset.item(from: line, line: 0) else {
                skipped += 1
                return
            }
            if reservoir.admit() {
                reservoir.place(DriftObservation(messages: item.prompt, tools: item.tools, answer: item.reference, tokenize: tokenize))
            }
        }
        return (reservoir.items, reservoir.seen, skipped)
    }

    /// Observations of the chat completions `filter` selects (shadow runs left out): failures count with no
    /// answer, the latest accepted/rejected/edited verdict says whether the answer was rejected.
    public static func log(_ queries: any LogQueries, filter: RequestFilter, cap: Int, seed: UInt64 = 11,
                           tokenize: ((String) -> [Int32])? = nil) throws -> (observations: [DriftObservation], total: Int) {
        var reservoir = Reservoir<DriftObservation>(cap: cap, seed: seed)
        var filter = filter
        filter.shadows = false
        try queries.forEachRequest(RequestQuery(filter: filter, limit: 500, includeFeedback: true)) { entry in
            let r = entry.record
            guard r.endpoint == "/v1/chat/completions" else { return }
            // Reservoir sampling decides first, so unsampled rows are never parsed.
            guard reservoir.admit() else { return }
            guard let (messages, tools) = r.chatPrompt else { return }
            let failed = r.status >= 400 || r.errorType != nil
            var o = DriftObservation(messages: messages, tools: tools, answer: failed ? nil : r.chatMessage, tokenize: tokenize)
            o.failed = failed
            o.requestID = r.id
            o.errorType = r.errorType
            o.refused = o.refused ?? (failed ? nil : false)
            var verdict: FeedbackSignal?
            for f in entry.feedback where f.signal == .accepted || f.signal == .rejected || f.signal == .edited { verdict = f.signal }
            o.rejected = verdict.map { $0 == .rejected }
            reservoir.place(o)
        }
        return (reservoir.items, reservoir.seen)
    }
}

extension DriftSource {
    /// The requests of `filter` within `range` (`SINCE[..UNTIL]`, see `TimeExpression`).
    public static func log(_ queries: any LogQueries, filter: RequestFilter, range: String, now: Date, cap: Int,
                           tokenize: ((String) -> [Int32])? = nil) throws -> (observations: [DriftObservation], total: Int) {
        var within = filter
        let r = try TimeExpression.range(range, now: now)
        (within.createdFrom, within.createdBefore) = (r.since, r.until)
        return try log(queries, filter: within, cap: cap, tokenize: tokenize)
    }

    /// A baseline: an export `file`, or the requests of `filter` within the past `window`; with the lines of the
    /// file that could not be used (0 for a window).
    public static func baseline(file: String?, window: String?, queries: any LogQueries, filter: RequestFilter, now: Date, cap: Int,
                                tokenize: ((String) -> [Int32])? = nil) throws -> (observations: [DriftObservation], total: Int, skipped: Int) {
        if let file { return try export(path: file, cap: cap, tokenize: tokenize) }
        guard let window else { throw EvalError("a baseline is an export file or a past window of the log") }
        let (observations, total) = try log(queries, filter: filter, range: window, now: now, cap: cap, tokenize: tokenize)
        return (observations, total, 0)
    }
}

/// Algorithm R: keeps a uniform sample of `cap` items of a stream of unknown length.
struct Reservoir<T> {
    let cap: Int
    private(set) var items: [T] = []
    private(set) var seen = 0
    private(set) var rng: SeededRandom
    private var slot: Int?

    init(cap: Int, seed: UInt64) {
        self.init(cap: cap, rng: SeededRandom(seed: seed))
    }

    init(cap: Int, rng: SeededRandom) {
        self.cap = max(1, cap)
        self.rng = rng
    }

    mutating func add(_ item: T) {
        if admit() { place(item) }
    }

    /// Counts one more item of the stream; true when it is to be kept (then `place` it).
    mutating func admit() -> Bool {
        seen += 1
        if items.count < cap { slot = nil; return true }
        let j = Int(rng.next() % UInt64(seen))
        guard j < cap else { return false }
        slot = j
        return true
    }

    mutating func place(_ item: T) {
        if let slot { items[slot] = item } else { items.append(item) }
        slot = nil
    }
}
