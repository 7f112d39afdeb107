import ArgumentParser
import Foundation
import FlywheelTokenizer
import FlywheelEngine
import FlywheelKernels
import FlywheelConfig
import FlywheelInspect
import FlywheelLoop
import FlywheelStore

struct DriftCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drift",
        abstract: "Compare recent traffic with what the model was trained on, and say whether it drifted.",
        discussion: """
            The baseline is an export file (--baseline, e.g. the sft file a model was trained on) or a past window of \
            the log (--baseline-window); the window is recent traffic (--window, default the last 24 hours). RANGE is \
            SINCE or SINCE..UNTIL, each ISO 8601 or 90m / 24h / 7d ago. Signals: prompt and answer lengths (PSI), \
            character trigrams and script mix (Jensen–Shannon distance), new or vanished tools and system prompts, \
            error / refusal / rejection rates (log baselines only), and a kernel two-sample test (MMD) on hashed prompt \
            vectors; an effect counts only with a permutation p-value below --alpha. Exit status: 0 ok, 3 warn, 4 alert, \
            2 not judged (too few requests on a side), 1 on errors.
            """)

    @OptionGroup var selection: DriftSelection

    @Option(name: .long, help: "Only requests a policy sent to this target.")
    var variant: String?

    @Option(name: .long, help: "A GGUF model (the local model being watched): its tokenizer adds the token unigram signal, and its mean-pooled hidden states are the prompt vectors of the kernel test.")
    var localModel: String?

    @Flag(name: .long, help: "With --local-model, keep hashed vectors for the kernel test (faster than running the model).")
    var hashedVectors = false

    @Option(name: .long, help: "A configuration file whose drift.thresholds apply (its secrets are not needed).")
    var config: String?

    @Option(name: .long, help: "Significance level of each tested signal.")
    var alpha: Double = 0.005

    @Option(name: .long, help: "Requests per side the tests look at (a uniform sample beyond).")
    var sample: Int = 2_000

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @Option(name: .long, help: "Also write a self-contained HTML page with the charts.")
    var html: String?

    func validate() throws {
        guard alpha > 0, alpha < 1 else { throw ValidationError("--alpha must be between 0 and 1") }
        guard (100...1_000_000).contains(sample) else { throw ValidationError("--sample must be 100...1000000") }
    }

    func run() throws {
        let overrides = try config.map { try ConfigReading.load($0).drift?.thresholds ?? [:] } ?? [:]
        let thresholds = DriftThresholds(overrides: overrides, alpha: alpha, sample: sample)
        var filter = selection.filter
        filter.variant = variant
        var tokenize: ((String) -> [Int32])?
        var embed: ((DriftObservation) -> [Float]?)?
        if let localModel {
            do {
                let file = try GGUFFile(path: localModel)
                let tokenizer = Tokenizer(try TokenizerVocabulary(gguf: file))
                tokenize = { tokenizer.encode($0, addSpecial: false) }
                if !hashedVectors {
                    let model = try LlamaModel(file: file)
                    let limit = min(512, model.config.contextLength)
                    let context = try InferenceContext(model: model, maxTokens: limit, pool: ComputePool())
                    embed = { o in
                        let tokens = tokenizer.encode(o.text, addSpecial: true).prefix(limit)
                        return tokens.isEmpty ? nil : try? context.meanPooledHiddenState(Array(tokens))
                    }
                }
            } catch {
                Console.error("flywheel: drift: cannot read the tokenizer of \(localModel): \(error)")
                throw ExitCode(1)
            }
        }
        let (base, current) = try selection.load(filter, baselineCap: sample, cap: sample, tokenize: tokenize)
        if base.skipped > 0, let baseline = selection.baseline {
            Console.error("flywheel: drift: \(base.skipped) lines of \(baseline) skipped (not export lines)")
        }
        var result = DriftAnalyzer.analyze(baseline: base.observations, window: current.observations, thresholds: thresholds, embed: embed)
        result.baselineCount = base.total
        result.windowCount = current.total
        if let html {
            do {
                try Data(result.html(title: "Flywheel drift").utf8).write(to: URL(fileURLWithPath: html))
            } catch {
                Console.error("flywheel: drift: cannot write \(html): \(error.localizedDescription)")
                throw ExitCode(1)
            }
        }
        if json {
            Console.line(result.json.serializedString())
        } else {
            Console.write(TerminalText.visible(result.table(), multiline: true))
        }
        switch result.status {
        case .alert: throw ExitCode(4)
        case .warn: throw ExitCode(3)
        default: if !result.judged { throw ExitCode(2) }
        }
    }
}
