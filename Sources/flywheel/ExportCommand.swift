import ArgumentParser
import Foundation
import FlywheelInspect
import FlywheelLoop
import FlywheelStore

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a training set (JSONL) from the log, with a manifest.",
        discussion: """
            Writes OUT (train), OUT-stem.validation.jsonl, OUT-stem.holdout.jsonl and OUT-stem.manifest.json. Only \
            successful chat completions answered by an upstream are taken unless told otherwise; PII is scrubbed and \
            exact and near duplicates removed by default; prompts are split by a hash, so one prompt never lands in two files.
            """)

    @Option(name: .long, help: "sft, dpo (OpenAI's preference shape) or dpo-trl (TRL's prompt/chosen/rejected).")
    var format: String

    @Option(name: .long, help: "The training file to write (the others go beside it).")
    var out: String

    @OptionGroup var log: LogSelection

    @Flag(name: .long, help: "Only answers whose latest verdict is accepted.")
    var acceptedOnly = false

    @Flag(name: .long, help: "Leave out answers whose latest verdict is rejected.")
    var excludeRejected = false

    @Flag(name: .long, help: "Only answers with a correction.")
    var correctedOnly = false

    @Option(name: .long, help: "Only answers whose mean score is at least this.")
    var minScore: Double?

    @Option(name: .long, help: "Only answers with feedback of at least this reviewer weight.")
    var minWeight: Double?

    @Flag(name: .long, help: "An edited answer replaces the logged one.")
    var applyCorrections = false

    @Flag(name: .long, help: "Also take answers of the local route (without it, only local answers users corrected are taken: as their corrections with --apply-corrections, or as preference pairs).")
    var includeLocal = false

    @Flag(name: .long, help: "Also take the requests of `flywheel eval` runs and their judges (tagged eval, eval-judge): golden-set replays, left out by default.")
    var includeEvals = false

    @Flag(name: .long, help: "Also take failed, incomplete and truncated requests.")
    var includeFailed = false

    @Flag(name: .long, help: "Do not scrub PII (emails, phone numbers, cards, IBANs, IPs, keys).")
    var noScrub = false

    @Flag(name: .long, help: "Keep duplicates, exact and near.")
    var keepDuplicates = false

    @Flag(name: .long, help: "Keep near-duplicates (still remove exact ones).")
    var keepNearDuplicates = false

    @Option(name: .long, help: "Jaccard similarity (of word 5-grams, system prompts left out) from which a line is a near-duplicate of an earlier one (0.5...0.99).")
    var nearThreshold: Double = 0.8

    @Option(name: .long, help: "Memory for the near-duplicate index in MiB (about 150 bytes a line); past it, lines are still checked but no longer indexed (the manifest says when).")
    var dedupeMemoryMb: Int = 64

    @Option(name: .long, help: "Share of prompts in the validation file (0...1).")
    var validationFraction: Double = 0.1

    @Option(name: .long, help: "Prompts kept apart as a golden set.")
    var holdout: Int = 0

    @Flag(name: .long, help: "Leave out the flywheel_request_id field (for consumers that refuse unknown keys).")
    var noLineage = false

    func run() throws {
        guard let format = ExportOptions.Format(rawValue: format) else {
            throw ValidationError("--format must be one of \(ExportOptions.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard (0...1).contains(validationFraction) else { throw ValidationError("--validation-fraction must be 0...1") }
        guard holdout >= 0 else { throw ValidationError("--holdout must not be negative") }
        guard (0.5...0.99).contains(nearThreshold) else { throw ValidationError("--near-threshold must be 0.5...0.99") }
        guard (1...65_536).contains(dedupeMemoryMb) else { throw ValidationError("--dedupe-memory-mb must be 1...65536") }
        var options = ExportOptions(format: format)
        options.filter = try log.filter()
        if !includeEvals { options.filter.excludedTags = RequestFilter.evaluationTags }
        options.acceptedOnly = acceptedOnly
        options.excludeRejected = excludeRejected
        options.correctedOnly = correctedOnly
        options.minScore = minScore
        options.minWeight = minWeight
        options.applyCorrections = applyCorrections
        options.includeLocal = includeLocal
        options.includeFailed = includeFailed
        options.scrubPII = !noScrub
        options.deduplicate = !keepDuplicates
        options.nearDuplicateThreshold = keepNearDuplicates ? nil : nearThreshold
        options.nearDuplicateMemory = dedupeMemoryMb << 20
        options.validationFraction = validationFraction
        options.holdout = holdout
        options.lineage = !noLineage
        let reader = try log.openReader()
        let paths = DatasetExporter.Paths(out: out)
        let onTerminal = isatty(2) == 1
        let manifest = try DatasetExporter(queries: reader, options: options).run(paths: paths) { read in
            if onTerminal { Console.progress("flywheel: \(read) requests read") }
        }
        if onTerminal { Console.error("") }
        let bad = manifest["bad_rows"]?.arrayValue?.compactMap(\.stringValue) ?? []
        if !bad.isEmpty {
            let shown = bad.prefix(10).map { TerminalText.visible($0) }.joined(separator: ", ")
            Console.error("flywheel: skipped \(manifest["dropped"]?["unreadable_row"]?.intValue ?? bad.count) unreadable rows (\(shown)\(bad.count > 10 ? ", ..." : ""); all in the manifest)")
        }
        let rows = ["train", "validation", "holdout"].map { "\($0) \(manifest["files"]?[$0]?["rows"]?.intValue ?? 0)" }
        Console.error("flywheel: read \(manifest["requests_read"]?.intValue ?? 0) requests; wrote \(rows.joined(separator: ", ")); manifest \(paths.manifest)")
    }
}
