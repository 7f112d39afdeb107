import ArgumentParser
import Dispatch
import FlywheelChatTemplate
import FlywheelEngine
import Foundation
import Synchronization

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text with a local GGUF model.",
        discussion: "Prints the generated text to stdout as it is produced, and the timings (prompt and decode tokens/s) to stderr.")

    @Option(name: .long, help: "The GGUF model file (llama or qwen2 architecture; F32, F16 or Q8_0 weights).")
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

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
    }

    func run() throws {
        var limits = InferenceScheduler.Limits()
        limits.slots = 1
        limits.promptChunk = 512
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

        let done = DispatchSemaphore(value: 0)
        let outcome = Mutex<Result<GenerationSummary, GenerationError>?>(nil)
        do {
            _ = try inference.submit(model: local, request: GenerationRequest(promptTokens: tokens, maxTokens: maxTokens,
                                                                              sampling: sampling, stop: stop)) { event in
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
}
