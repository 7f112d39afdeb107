import ArgumentParser
import Dispatch
import FlywheelChatTemplate
import FlywheelEngine
import FlywheelLoop
import Foundation
import Synchronization

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text with a local GGUF model.",
        discussion: "Prints the generated text to stdout as it is produced, and the timings (prompt and decode tokens/s) to stderr.")

    @Option(name: .long, help: "The GGUF model file (llama or qwen2 architecture; F32, F16, BF16, Q8_0, Q4_0/Q4_1/Q5_0/Q5_1, K-quants Q2_K...Q6_K, IQ4_NL/IQ4_XS weights).")
    var model: String

    @Option(name: .long, help: "The prompt text.")
    var prompt: String

    @Flag(name: .long, help: "Wrap the prompt as a user message in the model's chat template.")
    var chat = false

    @Option(name: .long, help: "A system message (with --chat).")
    var system: String?

    @Option(name: .long, help: "The most tokens to generate. Default 128.")
    var maxTokens: Int = 128

    @Option(name: .long, help: "Sampling temperature; 0 is greedy. Default 0.8.")
    var temperature: Float = 0.8

    @Option(name: .long, help: "Keep the K most likely tokens (0: off).")
    var topK: Int = 40

    @Option(name: .long, help: "Nucleus sampling: keep the most likely tokens up to this probability mass.")
    var topP: Float = 0.95

    @Option(name: .long, help: "Drop tokens below this fraction of the best token's probability.")
    var minP: Float = 0.05

    @Option(name: .long, help: "Penalty for repeating recent tokens (1: off).")
    var repetitionPenalty: Float = 1

    @Option(name: .long, help: "Random seed, for reproducible sampling.")
    var seed: UInt64?

    @Option(name: .long, help: "Stop before this string (repeatable).")
    var stop: [String] = []

    @Option(name: .long, help: "Compute threads. Default: the cores available.")
    var threads: Int?

    @Option(name: .long, help: "Context length (prompt plus output). Default: the model's, at most 4096.")
    var contextLength: Int?

    @Option(name: .long, help: "Run this many generations of the prompt at once (continuous batching) and print their aggregate speed and per-stream latency instead of the text. Default 1.")
    var parallel: Int = 1

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
        guard (1 ... 256).contains(parallel) else { throw ValidationError("--parallel must be between 1 and 256") }
    }

    func run() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = parallel
        limits.maxQueued = parallel
        limits.promptChunk = 512
        limits.promptChunkWhileDecoding = 512
        let loadStart = DispatchTime.now().uptimeNanoseconds
        let inference: LocalInference
        do {
            inference = try LocalInference(models: [LocalModelSpec(name: "local", path: model, contextLength: contextLength)],
                                           threads: threads, limits: limits)
        } catch {
            throw ValidationError("\(error)")
        }
        defer { inference.shutdown() }
        let local = inference.models[0]
        let loadSeconds = Double(DispatchTime.now().uptimeNanoseconds - loadStart) / 1e9
        Console.error("flywheel: \(local.summary); kernels: \(inference.kernels), threads: \(inference.threadCount); loaded in \(String(format: "%.2f", loadSeconds)) s")

        let tokens: [Int32]
        if chat {
            var messages: [ChatMessage] = []
            if let system { messages.append(ChatMessage(role: "system", text: system)) }
            messages.append(ChatMessage(role: "user", text: prompt))
            do {
                tokens = try local.chatPromptTokens(messages)
            } catch {
                throw ValidationError("\(error)")
            }
        } else {
            tokens = local.textPromptTokens(prompt)
        }

        var sampling = SamplingParameters()
        sampling.temperature = temperature
        sampling.topK = topK
        sampling.topP = topP
        sampling.minP = minP
        sampling.repetitionPenalty = repetitionPenalty
        sampling.seed = seed
        if let problem = sampling.validationError() { throw ValidationError(problem.message) }

        let request = GenerationRequest(promptTokens: tokens, maxTokens: maxTokens, sampling: sampling, stop: stop)
        if parallel > 1 { return try runParallel(inference: inference, model: local, request: request) }
        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<GenerationSummary, GenerationError>?>(nil)
        do {
            _ = try inference.submit(model: local, request: request) { event in
                switch event {
                case .text(let text): Console.write(text)
                case .finished(let summary): outcome.withLock { $0 = .success(summary) }; done.signal()
                case .failed(let error): outcome.withLock { $0 = .failure(error) }; done.signal()
                }
            }
        } catch {
            throw ValidationError("\(error)")
        }
        done.wait()
        Console.write("\n")
        switch outcome.withLock({ $0 }) {
        case .success(let s)?:
            Console.error(String(format: "flywheel: prompt %d tokens in %.3f s (%.1f tokens/s); generated %d tokens in %.3f s (%.1f tokens/s); finish_reason %@; seed %llu",
                                 s.promptTokens, s.promptSeconds, s.promptTokensPerSecond, s.completionTokens, s.decodeSeconds,
                                 s.decodeTokensPerSecond, s.finishReason.rawValue, s.seed))
        case .failure(let error)?:
            throw ValidationError("\(error)")
        case nil:
            break
        }
    }

    /// `--parallel N`: N copies of the request at once; prints aggregate decode speed, and time to first token and
    /// time between tokens as percentiles over all streams.
    private func runParallel(inference: LocalInference, model: LocalModel, request: GenerationRequest) throws {
        struct Stream {
            var result: Result<GenerationSummary, GenerationError>?
        }
        let streams = Mutex([Stream](repeating: Stream(), count: parallel))
        let done = DispatchSemaphore(value: 0)
        let started = DispatchTime.now().uptimeNanoseconds
        for i in 0 ..< parallel {
            do {
                _ = try inference.submit(model: model, request: request) { event in
                    switch event {
                    case .text: break
                    case .finished(let summary): streams.withLock { $0[i].result = .success(summary) }; done.signal()
                    case .failed(let error): streams.withLock { $0[i].result = .failure(error) }; done.signal()
                    }
                }
            } catch {
                throw ValidationError("\(error)")
            }
        }
        for _ in 0 ..< parallel { done.wait() }
        let wall = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let all = streams.withLock { $0 }
        var summaries: [GenerationSummary] = []
        for stream in all {
            switch stream.result {
            case .success(let s)?: summaries.append(s)
            case .failure(let error)?: throw ValidationError("\(error)")
            case nil: break
            }
        }
        let generated = summaries.reduce(0) { $0 + $1.completionTokens }
        // Aggregate decode: tokens per second while every stream is decoding (after the last first token, before
        // the first stream ends), so prompt steps of late joiners do not dilute it. Token times are rebuilt from
        // each stream's first token (queue + prompt after submission) and its gaps.
        let times: [[Double]] = summaries.map { s in
            var t = s.queueSeconds + s.promptSeconds
            return [t] + s.tokenGapsMilliseconds.map { t += Double($0) / 1000; return t }
        }
        let windowStart = times.map { $0.first ?? 0 }.max() ?? 0
        let windowEnd = times.map { $0.last ?? 0 }.min() ?? 0
        let inWindow = times.reduce(0) { $0 + $1.filter { $0 > windowStart && $0 <= windowEnd }.count }
        let decodeRate = windowEnd > windowStart
            ? Double(inWindow) / (windowEnd - windowStart)
            : summaries.reduce(0.0) { $0 + $1.decodeTokensPerSecond }
        let firstTokens = summaries.map { ($0.queueSeconds + $0.promptSeconds) * 1000 }
        let gaps = summaries.flatMap { $0.tokenGapsMilliseconds.map(Double.init) }
        func percentile(_ values: [Double], _ p: Double) -> Double { nearestRankPercentile(values, p) ?? 0 }
        Console.error(String(format: "flywheel: %d streams, prompt %d tokens each; generated %d tokens in %.3f s (%.1f tokens/s overall); decode %.1f tokens/s aggregate while all decode, %.1f per stream",
                             parallel, request.promptTokens.count, generated, wall, Double(generated) / wall, decodeRate,
                             decodeRate / Double(max(1, summaries.count))))
        Console.error(String(format: "flywheel: time to first token p50 %.1f ms, p99 %.1f ms; time between tokens p50 %.1f ms, p99 %.1f ms",
                             percentile(firstTokens, 0.5), percentile(firstTokens, 0.99), percentile(gaps, 0.5), percentile(gaps, 0.99)))
    }
}
