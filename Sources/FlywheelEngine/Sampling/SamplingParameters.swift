/// How the next token is chosen from the model's logits. The defaults are OpenAI's (temperature 1,
/// top_p 1, no penalties); `temperature == 0` means greedy (always the most likely token).
///
/// Order of application (the order vLLM and Hugging Face use): logit bias, repetition /
/// frequency / presence penalties, temperature, then top_k, top_p and min_p truncation, then a
/// draw from what is left.
public struct SamplingParameters: Sendable, Equatable {
    /// Divides the logits; 0 selects greedy decoding. Range 0...2 as OpenAI accepts.
    public var temperature: Float = 1
    /// Keep only the `topK` most likely tokens; 0 keeps all.
    public var topK: Int = 0
    /// Keep the smallest set of most likely tokens whose probabilities sum to at least `topP`.
    public var topP: Float = 1
    /// Drop tokens whose probability is below `minP` times the most likely token's.
    public var minP: Float = 0
    /// Multiplicative penalty (llama.cpp / Hugging Face style) for tokens in the penalty window:
    /// positive logits are divided by it, negative ones multiplied. 1 is off.
    public var repetitionPenalty: Float = 1
    /// OpenAI's: subtracts `frequencyPenalty × count` from each token's logit.
    public var frequencyPenalty: Float = 0
    /// OpenAI's: subtracts `presencePenalty` from every token that occurs at least once.
    public var presencePenalty: Float = 0
    /// How many of the most recent tokens (prompt included) the three penalties look at.
    public var penaltyWindow: Int = 64
    /// Added to the logit of each listed token id before anything else (OpenAI `logit_bias`, -100...100).
    public var logitBias: [Int32: Float] = [:]
    /// Seeds the random draw: the same seed, prompt and parameters give the same tokens.
    /// Nil draws a fresh seed from the system.
    public var seed: UInt64?

    public init() {}

    /// True when the choice is deterministic without randomness.
    public var isGreedy: Bool { temperature <= 0 || topK == 1 }

    /// Checks ranges; returns a message naming the parameter, or nil when all are valid.
    public func validationError() -> (parameter: String, message: String)? {
        if !temperature.isFinite || temperature < 0 || temperature > 2 {
            return ("temperature", "'temperature' must be between 0 and 2.")
        }
        if topK < 0 { return ("top_k", "'top_k' must be 0 (off) or a positive integer.") }
        if !topP.isFinite || topP <= 0 || topP > 1 { return ("top_p", "'top_p' must be greater than 0 and at most 1.") }
        if !minP.isFinite || minP < 0 || minP > 1 { return ("min_p", "'min_p' must be between 0 and 1.") }
        if !repetitionPenalty.isFinite || repetitionPenalty <= 0 || repetitionPenalty > 10 {
            return ("repetition_penalty", "'repetition_penalty' must be greater than 0 and at most 10.")
        }
        if !frequencyPenalty.isFinite || abs(frequencyPenalty) > 2 {
            return ("frequency_penalty", "'frequency_penalty' must be between -2 and 2.")
        }
        if !presencePenalty.isFinite || abs(presencePenalty) > 2 {
            return ("presence_penalty", "'presence_penalty' must be between -2 and 2.")
        }
        if penaltyWindow < 0 { return ("penalty_window", "'penalty_window' must not be negative.") }
        for (_, bias) in logitBias where !bias.isFinite || abs(bias) > 100 {
            return ("logit_bias", "Each 'logit_bias' value must be between -100 and 100.")
        }
        return nil
    }
}
