import ArgumentParser
import Foundation
import FlywheelInspect
import FlywheelJSON
import FlywheelLoop
import FlywheelStore
import Synchronization

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a candidate model on a golden set or logged traffic, through a running gateway.",
        discussion: """
            Sends every item's conversation to the candidate (and the baseline, when given) through the gateway at \
            --gateway, so requests take its routes, policies and local models and are logged, tagged eval and \
            eval:<run id>. Deterministic checks compare answers with the dataset's reference answers: tool calls \
            (name and arguments), JSON fields for JSON answers, else exact text; --expect-regex adds a pattern. With \
            --judge, a model compares candidate and baseline (or the reference) pairwise, asked twice with the \
            positions swapped; disagreeing orders count as a tie. Results are stored in the log database; \
            --resume RUN continues an interrupted run. Exit status: 0 when every gate passes, 3 when one fails, \
            1 on errors.
            """)

    @Option(name: .long, help: "A JSONL dataset: an export's sft (or dpo) lines, e.g. its .holdout.jsonl golden set.")
    var dataset: String?

    @Flag(name: .long, help: "Take the items from the log instead (successful chat completions the filters select; their logged answers are the references).")
    var fromLog = false

    @Flag(name: .long, help: "Judge the shadow pairs in the log offline: the side --candidate answered against the other (needs --judge).")
    var fromShadows = false

    @OptionGroup var log: LogSelection

    @Option(name: .long, help: "The model to evaluate (a local model or a routed model name).")
    var candidate: String

    @Option(name: .long, help: "A model to compare with; without it, the dataset's reference answers are the baseline.")
    var baseline: String?

    @Option(name: .long, help: "A model that judges candidate against baseline pairwise.")
    var judge: String?

    @Option(name: .long, help: "A file with the judge's instructions (default: a rubric for task success; it must ask for [[A]], [[B]] or [[TIE]]).")
    var rubricFile: String?

    @Option(name: .long, help: "A regular expression every candidate answer must match.")
    var expectRegex: String?

    @Option(name: .long, help: "The gateway's base URL.")
    var gateway: String = "http://127.0.0.1:8080"

    @Option(name: .long, help: "Environment variable holding a client key for the gateway.")
    var apiKeyEnv: String = "FLYWHEEL_API_KEY"

    @Option(name: .long, help: "Items evaluated at once.")
    var concurrency: Int = 4

    @Option(name: .long, help: "Seconds one request may take.")
    var timeout: Double = 120

    @Option(name: .long, help: "Times a judge reply without a verdict is asked again before it counts as an error.")
    var judgeRetries: Int = 2

    @Option(name: .long, help: "Sampling temperature for candidate and baseline.")
    var temperature: Double = 0

    @Option(name: .long, help: "max_tokens for candidate and baseline answers.")
    var maxTokens: Int?

    @Option(name: .long, help: "Evaluate only the first N items.")
    var limit: Int?

    @Option(name: .long, help: "Gate: the candidate's share of items passing every check must be at least this (0...1).")
    var minPassRate: Double?

    @Option(name: .long, help: "Gate: the judge's win rate for the candidate, ties counted half, must be at least this (0...1).")
    var minWinRate: Double?

    @Option(name: .long, help: "Gate: the candidate's pass rate may be at most this much below the baseline's (the references': 1).")
    var maxRegression: Double?

    @Option(name: .long, help: "Continue the run with this id: items already stored are not asked again.")
    var resume: String?

    @Flag(name: .long, help: "Print the summary as one JSON object.")
    var json = false

    func validate() throws {
        guard [dataset != nil, fromLog, fromShadows].filter({ $0 }).count == 1 else {
            throw ValidationError("give --dataset FILE, --from-log or --from-shadows (one of them)")
        }
        if fromShadows {
            guard judge != nil else { throw ValidationError("--from-shadows needs --judge: the answers are logged, only a judge can compare them") }
            guard baseline == nil else { throw ValidationError("--from-shadows takes no --baseline: the other side of each pair is the baseline") }
        }
        guard (1...64).contains(concurrency) else { throw ValidationError("--concurrency must be 1...64") }
        guard timeout > 0, timeout <= 3_600 else { throw ValidationError("--timeout must be more than 0 and at most 3600 seconds") }
        guard (0...10).contains(judgeRetries) else { throw ValidationError("--judge-retries must be 0...10") }
        for (name, value) in [("--min-pass-rate", minPassRate), ("--min-win-rate", minWinRate), ("--max-regression", maxRegression)] {
            if let value, !(0...1).contains(value) { throw ValidationError("\(name) must be 0...1") }
        }
        if minWinRate != nil && judge == nil { throw ValidationError("--min-win-rate needs --judge") }
        if let limit, limit < 1 { throw ValidationError("--limit must be positive") }
        guard gateway.hasPrefix("http://") || gateway.hasPrefix("https://") else {
            throw ValidationError("--gateway must be an http:// or https:// URL")
        }
    }

    func run() throws {
        var options = EvalOptions(gateway: gateway, candidate: candidate, checks: try EvalChecks(regex: expectRegex))
        options.baseline = baseline
        options.judge = judge
        if let rubricFile {
            guard let text = try? String(contentsOfFile: rubricFile, encoding: .utf8) else {
                throw ValidationError("--rubric-file: cannot read \(rubricFile)")
            }
            guard ["[[A]]", "[[B]]", "[[TIE]]"].allSatisfy(text.contains) else {
                throw ValidationError("--rubric-file: the rubric must ask for a verdict of [[A]], [[B]] or [[TIE]] (the replies are read for them)")
            }
            options.rubric = text
        }
        options.apiKey = ProcessInfo.processInfo.environment[apiKeyEnv].flatMap { $0.isEmpty ? nil : $0 }
        options.concurrency = concurrency
        options.timeout = timeout
        options.judgeRetries = judgeRetries
        options.temperature = temperature
        options.maxTokens = maxTokens
        var gates = EvalGates()
        gates.minPassRate = minPassRate
        gates.minWinRate = minWinRate
        gates.maxRegression = maxRegression

        // The items, and the lines that could not be used (named, then skipped).
        var (items, problems): ([EvalItem], [EvalDataset.Problem])
        let source: String
        if let dataset {
            (items, problems) = try EvalDataset.load(path: dataset)
            if let limit { items = Array(items.prefix(limit)) }
            source = dataset
        } else if fromShadows {
            (items, problems) = try EvalDataset.fromShadows(try log.openReader(), filter: try log.filter(), candidate: candidate, limit: limit)
            source = "shadows"
        } else {
            (items, problems) = try EvalDataset.fromLog(try log.openReader(), filter: try log.filter(), limit: limit)
            source = "log"
        }
        for p in problems.prefix(20) { Console.error("flywheel: eval: line \(p.line) skipped: \(TerminalText.visible(p.reason))") }
        if problems.count > 20 { Console.error("flywheel: eval: \(problems.count - 20) more lines skipped") }
        guard !items.isEmpty else {
            Console.error("flywheel: eval: no usable items in \(source)\(problems.isEmpty ? "" : " (\(problems.count) lines skipped)")")
            throw ExitCode(1)
        }

        let store: SQLiteEvalStore
        do {
            store = try SQLiteEvalStore(path: log.db)
        } catch {
            Console.error("flywheel: eval: cannot open \(log.db) to store the results: \(error)")
            throw ExitCode(1)
        }
        var stored: [Int: JSON] = [:]
        let runID: String
        if let resume {
            guard let run = try store.run(id: resume) else { throw ValidationError("--resume: no run \(resume) in \(log.db)") }
            guard run.candidate == candidate, run.baseline == baseline, run.judge == judge, run.dataset == source else {
                throw ValidationError("--resume: run \(resume) compared \(run.candidate) with \(run.baseline ?? "the references") on \(run.dataset); give the same options")
            }
            // What changes an item's result must match too.
            // Both sides as parsed text, so 0 and 0.0 compare equal.
            let recorded = (try? JSONParser.parse(run.optionsJSON, limits: .depthOnly)) ?? .null
            let now = (try? JSONParser.parse(options.json.serializedString(), limits: .depthOnly)) ?? .null
            for key in ["expect_regex", "rubric", "temperature", "max_tokens"] where (recorded[key] ?? .null) != (now[key] ?? .null) {
                throw ValidationError("--resume: run \(resume) ran with a different \(key.replacingOccurrences(of: "_", with: "-")); give the same options")
            }
            for (item, text) in try store.items(run: resume) {
                if let parsed = try? JSONParser.parse(text, limits: .depthOnly) { stored[item] = parsed }
            }
            runID = resume
        } else {
            runID = Self.newRunID()
            var recorded = options.json.objectValue ?? JSONObject()
            recorded["gates"] = gates.json
            recorded["problems"] = .array(problems.map { ["line": .int(Int64($0.line)), "reason": .string($0.reason)] })
            try store.createRun(EvalRunRecord(id: runID, createdAtMillis: Self.nowMillis(), dataset: source, candidate: candidate,
                                              baseline: baseline, judge: judge, optionsJSON: JSON.object(recorded).serializedString()))
        }
        let pending = items.filter { stored[$0.item] == nil }
        if !stored.isEmpty { Console.error("flywheel: eval: resuming \(runID): \(stored.count) items done, \(pending.count) to go") }

        let onTerminal = isatty(2) == 1
        let results = Mutex(stored)
        let storeErrors = Mutex<[String]>([])
        let box = StoreBox(store)
        let total = items.count
        let runner = EvalRunner(options: options, runID: runID)
        try runner.run(pending) { item, result in
            do {
                try box.store.saveItem(run: runID, item: item.item, resultJSON: result.serializedString())
            } catch {
                storeErrors.withLock { $0.append("\(error)") }
            }
            let done = results.withLock { r -> Int in
                r[item.item] = result
                return r.count
            }
            if onTerminal { Console.progress("flywheel: eval \(runID): \(done)/\(total) items") }
        }
        if onTerminal { Console.error("") }
        if let failure = storeErrors.withLock({ $0.first }) {
            Console.error("flywheel: eval: warning: some results could not be stored (the run cannot resume them): \(failure)")
        }
        let all = results.withLock { r in items.compactMap { r[$0.item] } }
        let reader = try? SQLiteLogReader(path: log.db)
        let summary = EvalSummary(results: all, options: options, gates: gates, queries: reader)
        let status = summary.status
        var summaryJSON = summary.json.objectValue ?? JSONObject()
        summaryJSON["run_id"] = .string(runID)
        summaryJSON["status"] = .string(status)
        summaryJSON["skipped_lines"] = .int(Int64(problems.count))
        try store.finishRun(id: runID, status: status, summaryJSON: JSON.object(summaryJSON).serializedString(), finishedAtMillis: Self.nowMillis())
        if json {
            Console.line(JSON.object(summaryJSON).serializedString())
        } else {
            Console.write(TerminalText.visible(summary.table(runID: runID), multiline: true))
        }
        if status == "incomplete" {
            let firstError = all.lazy.compactMap { $0["candidate"]?["error"]?.stringValue }.first ?? "no answers"
            Console.error("flywheel: eval: the candidate answered no item (\(TerminalText.visible(firstError)))")
            throw ExitCode(1)
        }
        if !summary.passed { throw ExitCode(3) }
    }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// A sortable, unique run id: `ev-` and the UTC time, then random hex.
    static func newRunID() -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd-HHmmss"
        return "ev-\(f.string(from: Date()))-\(String(UInt32.random(in: 0...UInt32.max), radix: 16))"
    }
}

/// The eval store, used by one worker at a time: `EvalRunner.run` calls its record callback under a lock, so the
/// connection (which is not thread-safe) is never used by two threads at once.
private final class StoreBox: @unchecked Sendable {
    let store: SQLiteEvalStore
    init(_ store: SQLiteEvalStore) { self.store = store }
}
