@testable import FlywheelEngine

extension GenerationRequest {
    /// A greedy (temperature 0) request, the tests' usual: the same prompt always gives the same tokens.
    static func greedy(_ prompt: [Int32], max: Int? = nil, stop: [String] = []) -> GenerationRequest {
        var sampling = SamplingParameters()
        sampling.temperature = 0
        return GenerationRequest(promptTokens: prompt, maxTokens: max, sampling: sampling, stop: stop)
    }
}
