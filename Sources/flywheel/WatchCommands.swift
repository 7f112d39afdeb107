import ArgumentParser
import Foundation
import FlywheelConfig
import FlywheelInspect
import FlywheelJSON
import FlywheelLoop
import FlywheelStore

struct OutliersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outliers",
        abstract: "Requests far from what the model was trained on, ranked, with ids `flywheel show` opens.",
        discussion: """
            Scores each request of the window (a uniform sample of --sample when there are more) by the distance of its \
            prompt to the nearest baseline prompt (hashed word and trigram vectors, 1 − cosine similarity), plus a \
            weight for a length beyond the baseline's extremes, a tool the baseline never offered, and a failure of a \
            kind the baseline does not have.
            """)

    @OptionGroup var selection: DriftSelection

    @Option(name: [.customShort("n"), .long], help: "How many to list.")
    var limit: Int = 20

    @Option(name: .long, help: "Window requests looked at (a uniform sample beyond).")
    var sample: Int = 5_000

    @Flag(name: .long, help: "One JSON object per outlier.")
    var json = false

    func validate() throws {
        guard limit >= 1, (100...1_000_000).contains(sample) else { throw ValidationError("-n must be positive and --sample 100...1000000") }
    }

    func run() throws {
        let (base, current) = try selection.load(selection.filter, baselineCap: 2_000, cap: sample)
        guard !base.observations.isEmpty else { throw ValidationError("the baseline has no requests") }
        for o in OutlierRanking.rank(window: current.observations, baseline: base.observations, limit: limit) {
            if json {
                Console.line(JSON.object(JSONObject([("id", .string(o.requestID)), ("score", .double((o.score * 1000).rounded() / 1000)),
                                                    ("distance", .double((o.distance * 1000).rounded() / 1000)),
                                                    ("reasons", .array(o.reasons.map(JSON.string))), ("preview", .string(o.preview))])).serializedString())
            } else {
                Console.line(TerminalText.visible(String(format: "%.2f  ", o.score) + o.requestID + "  " + o.reasons.joined(separator: "; ")))
                Console.line("      " + TerminalText.visible(o.preview.replacingOccurrences(of: "\n", with: " ")))
            }
        }
    }
}

struct CorrectionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "corrections",
        abstract: "Corrections ranked by value for review and for the next export.",
        discussion: """
            Every request with a correction (an `edited` verdict) in the selection, scored by the reviewer's weight (sent \
            with the feedback; 1 when none), how much the correction changed the answer (word-set Jaccard distance) \
            and how rare its prompt is among the corrections. `flywheel export --corrected-only --apply-corrections` \
            turns them into training data.
            """)

    @OptionGroup var log: LogSelection

    @Option(name: [.customShort("n"), .long], help: "How many to list.")
    var limit: Int = 20

    @Option(name: .long, help: "A configuration file whose feedback.source_weights weigh feedback sent without a weight.")
    var config: String?

    @Flag(name: .long, help: "One JSON object per correction.")
    var json = false

    func run() throws {
        var sourceWeights: [String: Double] = [:]
        if let config {
            sourceWeights = try ConfigReading.load(config).feedback.sourceWeights
        }
        let reader = try log.openReader()
        var candidates: [CorrectionRanking.Candidate] = []
        var filter = try log.filter()
        filter.shadows = false
        try reader.forEachRequest(RequestQuery(filter: filter, limit: 500, includeFeedback: true)) { entry in
            guard let edit = entry.feedback.last(where: { $0.signal == .edited && $0.correction != nil }),
                  let (messages, tools) = entry.record.chatPrompt else { return }
            let answer = entry.record.chatMessage
            let weight = entry.feedback.compactMap(\.weight).max() ?? edit.source.flatMap { sourceWeights[$0] }
            candidates.append(.init(requestID: entry.record.id, prompt: DriftObservation(messages: messages, tools: tools, answer: answer),
                                    answer: answer?["content"]?.stringValue ?? "", correction: edit.correction!, weight: weight,
                                    source: edit.source))
        }
        for c in CorrectionRanking.rank(candidates, limit: limit) {
            if json {
                Console.line(JSON.object(JSONObject([
                    ("id", .string(c.requestID)), ("score", .double((c.score * 1000).rounded() / 1000)), ("weight", .double(c.weight)),
                    ("change", .double((c.change * 1000).rounded() / 1000)), ("rarity", .double((c.rarity * 1000).rounded() / 1000)),
                    ("source", .optional(c.source)), ("preview", .string(c.preview)), ("correction", .string(c.correction)),
                ])).serializedString())
            } else {
                Console.line(TerminalText.visible(String(format: "%.2f  weight %g  change %.2f  rarity %.2f  ", c.score, c.weight, c.change, c.rarity)
                                                  + c.requestID + (c.source.map { "  (\($0))" } ?? "")))
                Console.line("      " + TerminalText.visible(c.preview.replacingOccurrences(of: "\n", with: " ")))
                Console.line("      → " + TerminalText.visible(c.correction.prefix(120).replacingOccurrences(of: "\n", with: " ")))
            }
        }
        if candidates.isEmpty && !json { Console.error("flywheel: no corrections in the selection") }
    }
}
