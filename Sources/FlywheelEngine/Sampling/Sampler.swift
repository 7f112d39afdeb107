import Foundation

/// Picks each next token from a row of logits according to `SamplingParameters`.
///
/// One sampler belongs to one generation and is used by one thread. It keeps the penalty window
/// (the most recent tokens and their counts) and its random generator; every buffer it needs is
/// allocated once, at init, so sampling allocates nothing per token.
///
/// Truncation stays cheap on large vocabularies: top_k uses a bounded heap, and top_p / min_p look
/// at a growing prefix of the best tokens (256, 512, ...) only until the cut-off is inside it,
/// which for real distributions is the first round. The probabilities themselves are exact:
/// the softmax denominator is always summed over the whole vocabulary.
public struct Sampler {
    public let parameters: SamplingParameters
    private var generator: Xoshiro256
    /// The penalty window as a ring of token ids, and how often each id occurs in it.
    private var window: [Int32]
    private var windowStart = 0
    private var counts: [Int32: Int] = [:]
    /// Scratch: candidate ids and their logits, or their weights once those are computed.
    private var candidateIDs: [Int32] = []
    private var candidateWeights: [Float] = []

    /// The seed in use (the parameters' seed, or the one drawn from the system).
    public let seed: UInt64

    public init(parameters: SamplingParameters) {
        self.parameters = parameters
        let seed = parameters.seed ?? UInt64.random(in: .min ... .max)
        self.seed = seed
        self.generator = Xoshiro256(seed: seed)
        self.window = []
        self.window.reserveCapacity(parameters.penaltyWindow)
    }

    /// Adds `token` to the penalty window (prompt tokens and generated ones alike).
    public mutating func observe(_ token: Int32) {
        let limit = parameters.penaltyWindow
        guard limit > 0 else { return }
        if window.count < limit {
            window.append(token)
        } else {
            let evicted = window[windowStart]
            if let c = counts[evicted] { counts[evicted] = c > 1 ? c - 1 : nil }
            window[windowStart] = token
            windowStart = (windowStart + 1) % limit
        }
        counts[token, default: 0] += 1
    }

    /// Adds each of `tokens` to the penalty window, in order.
    public mutating func observe(_ tokens: some Sequence<Int32>) {
        for t in tokens { observe(t) }
    }

    /// Chooses the next token. `logits` is overwritten: bias and penalties are applied to it, and when
    /// sampling (not greedy) without top_k its values become softmax numerators.
    public mutating func sample(_ logits: UnsafeMutableBufferPointer<Float>) -> Int32 {
        precondition(!logits.isEmpty, "sampling needs at least one logit")
        applyBiasAndPenalties(logits)
        if parameters.isGreedy { return Self.argmax(logits) }

        let inverseTemperature = 1 / parameters.temperature
        let maxLogit = logits[Int(Self.argmax(logits))]
        // Weights w = exp((l - max) / T): the softmax numerators (the best token's is 1). Exp keeps the order,
        // so candidates can be chosen from logits or weights alike.
        func weight(_ l: Float) -> Float { expf((l - maxLogit) * inverseTemperature) }

        var kept: Int
        var total: Double = 0
        if parameters.topK > 0 && parameters.topK < logits.count {
            // top_k first, so only its K candidates need weights; top_p then measures against what top_k
            // kept (the distribution is renormalized).
            selectBest(parameters.topK, from: logits)
            for i in candidateWeights.indices {
                candidateWeights[i] = weight(candidateWeights[i])
                total += Double(candidateWeights[i])
            }
            kept = cutoff(total: total)
        } else {
            // The exact softmax denominator needs every weight; they replace the logits in place.
            for i in logits.indices {
                logits[i] = weight(logits[i])
                total += Double(logits[i])
            }
            if parameters.topP >= 1 && parameters.minP <= 0 {
                var target = Double(generator.nextUnitFloat()) * total
                for (i, w) in logits.enumerated() {
                    target -= Double(w)
                    if target < 0 { return Int32(i) }
                }
                return Self.argmax(logits)  // rounding left a sliver of mass: the best token takes it
            }
            // Grow the candidate prefix until top_p / min_p cut inside it.
            var want = min(256, logits.count)
            while true {
                selectBest(want, from: logits)
                kept = cutoff(total: total)
                if kept < want || want == logits.count { break }
                want = min(want * 2, logits.count)
            }
        }

        var mass: Double = 0
        for i in 0 ..< kept { mass += Double(candidateWeights[i]) }
        var target = Double(generator.nextUnitFloat()) * mass
        for i in 0 ..< kept {
            target -= Double(candidateWeights[i])
            if target < 0 { return candidateIDs[i] }
        }
        return candidateIDs[0]
    }

    // MARK: steps

    private func applyBiasAndPenalties(_ logits: UnsafeMutableBufferPointer<Float>) {
        for (id, bias) in parameters.logitBias where id >= 0 && Int(id) < logits.count {
            logits[Int(id)] += bias
        }
        let p = parameters
        guard p.repetitionPenalty != 1 || p.frequencyPenalty != 0 || p.presencePenalty != 0 else { return }
        for (id, count) in counts where id >= 0 && Int(id) < logits.count {
            var l = logits[Int(id)]
            if p.repetitionPenalty != 1 { l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty }
            l -= Float(count) * p.frequencyPenalty + p.presencePenalty
            logits[Int(id)] = l
        }
    }

    /// Fills the candidate arrays with the `k` best tokens by `logits` (or weights: the order is the same),
    /// best first, ties by lower id.
    private mutating func selectBest(_ k: Int, from logits: UnsafeMutableBufferPointer<Float>) {
        candidateIDs.removeAll(keepingCapacity: true)
        candidateWeights.removeAll(keepingCapacity: true)
        if k > logits.count / 16 {
            // A large share of the vocabulary: one full sort beats a big heap.
            var order = Array(0 ..< logits.count)
            order.sort { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
            for i in order.prefix(k) { candidateIDs.append(Int32(i)); candidateWeights.append(logits[i]) }
            return
        }
        // A min-heap of size k on (logit, -id): the root is the weakest of the best k so far.
        func weaker(_ a: Int, _ b: Int) -> Bool {
            let la = candidateWeights[a], lb = candidateWeights[b]
            return la < lb || (la == lb && candidateIDs[a] > candidateIDs[b])
        }
        func siftDown(_ start: Int) {
            var i = start
            let n = candidateIDs.count
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < n, weaker(l, m) { m = l }
                if r < n, weaker(r, m) { m = r }
                if m == i { return }
                candidateIDs.swapAt(i, m); candidateWeights.swapAt(i, m)
                i = m
            }
        }
        for (i, l) in logits.enumerated() {
            if candidateIDs.count < k {
                candidateIDs.append(Int32(i)); candidateWeights.append(l)
                var c = candidateIDs.count - 1
                while c > 0 {
                    let parent = (c - 1) / 2
                    guard weaker(c, parent) else { break }
                    candidateIDs.swapAt(c, parent); candidateWeights.swapAt(c, parent)
                    c = parent
                }
            } else if l > candidateWeights[0] {
                candidateIDs[0] = Int32(i); candidateWeights[0] = l
                siftDown(0)
            }
        }
        // Heap to best-first order.
        var order = Array(0 ..< candidateIDs.count)
        order.sort { a, b in
            candidateWeights[a] > candidateWeights[b] || (candidateWeights[a] == candidateWeights[b] && candidateIDs[a] < candidateIDs[b])
        }
        let ids = order.map { candidateIDs[$0] }, ls = order.map { candidateWeights[$0] }
        candidateIDs.replaceSubrange(0..., with: ids)
        candidateWeights.replaceSubrange(0..., with: ls)
    }

    /// How many of the best-first candidates (as weights) survive top_p and min_p (at least one).
    /// `total` is the weight of the whole distribution the candidates come from.
    private func cutoff(total: Double) -> Int {
        let p = parameters
        var kept = candidateIDs.count
        if p.minP > 0 {
            // p_i >= minP * p_max  <=>  w_i >= minP, since the best token's weight is 1.
            var n = 0
            while n < kept, candidateWeights[n] >= p.minP { n += 1 }
            kept = max(1, n)
        }
        if p.topP < 1 {
            let goal = Double(p.topP) * total
            var cumulative: Double = 0
            for i in 0 ..< kept {
                cumulative += Double(candidateWeights[i])
                if cumulative >= goal { return i + 1 }
            }
        }
        return kept
    }

    /// The index of the largest logit (the lowest index on ties).
    public static func argmax(_ logits: UnsafeMutableBufferPointer<Float>) -> Int32 {
        var best = 0
        var bestValue = -Float.infinity
        for (i, l) in logits.enumerated() where l > bestValue {
            best = i; bestValue = l
        }
        return Int32(best)
    }
}
