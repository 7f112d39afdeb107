import Foundation
import FlywheelJSON

/// When a signal counts as drift. An effect must reach its threshold *and*, where the signal has one, its
/// permutation (or two-proportion) p-value must be below `alpha`: a window of 50 requests moves every score by
/// chance, and the p-value says whether it moved more than chance would.
public struct DriftThresholds: Sendable {
    /// Population Stability Index of prompt and answer lengths: below 0.1 no significant change, 0.1 to 0.2
    /// moderate, above 0.2 significant (the credit-scoring convention, e.g. Wu and Olson, 2010).
    public var psiWarn = 0.1
    public var psiAlert = 0.2
    /// Jensen–Shannon distance (natural log, as scipy's `jensenshannon`) of character-trigram and script
    /// distributions: 0.1 is Evidently's default drift threshold for it above 1,000 rows.
    public var jsWarn = 0.1
    public var jsAlert = 0.2
    /// Share of the window's requests with a tool or system prompt the baseline never had.
    public var newShareWarn = 0.01
    public var newShareAlert = 0.05
    /// Rise of the error, refusal or rejection rate (absolute).
    public var rateWarn = 0.05
    public var rateAlert = 0.10
    /// Squared MMD of the prompts' hashed vectors (RBF kernel, median heuristic; Gretton et al., 2012) from
    /// which a significant difference is an alert rather than a warning.
    public var mmdAlert = 0.05
    /// Each tested signal's significance level. About five signals carry a p-value, so the chance that unshifted
    /// traffic raises any of them stays near 5 × alpha (Bonferroni's bound).
    public var alpha = 0.005
    /// At least 1 / alpha, or no permutation p-value can fall below alpha.
    public var permutations = 400
    /// Observations per side the tests use (a seeded reservoir sample beyond it); the MMD uses `mmdSample`.
    public var sample = 2_000
    public var mmdSample = 200
    /// Fewer observations on a side than this: the signal is skipped, not judged.
    public var minObservations = 30

    public init() {}

    /// The defaults with `overrides` (by the config's names: `psi_warn`, `js_alert`, ...), a significance level and
    /// a sample size; enough permutations for a p-value to fall below `alpha` (at least 2 / alpha).
    public init(overrides: [String: Double], alpha: Double, sample: Int) {
        self.init(overrides: overrides)
        self.alpha = alpha
        self.sample = sample
        permutations = max(200, Int((2 / alpha).rounded(.up)))
    }

    /// The defaults with `overrides` (by the config's names: `psi_warn`, `js_alert`, ...) applied.
    public init(overrides: [String: Double]) {
        for (name, value) in overrides {
            switch name {
            case "psi_warn": psiWarn = value
            case "psi_alert": psiAlert = value
            case "js_warn": jsWarn = value
            case "js_alert": jsAlert = value
            case "new_share_warn": newShareWarn = value
            case "new_share_alert": newShareAlert = value
            case "rate_warn": rateWarn = value
            case "rate_alert": rateAlert = value
            case "mmd_alert": mmdAlert = value
            default: break
            }
        }
    }
}

public enum DriftStatus: String, Sendable, Comparable {
    case skipped, ok, warn, alert

    var rank: Int { switch self { case .skipped: 0; case .ok: 1; case .warn: 2; case .alert: 3 } }
    public static func < (a: DriftStatus, b: DriftStatus) -> Bool { a.rank < b.rank }
}

public struct DriftSignal: Sendable {
    public var name: String
    public var score: Double?
    public var warn: Double
    public var alert: Double
    public var pValue: Double?
    public var status: DriftStatus
    public var detail: String
}

public struct DriftResult: Sendable {
    public var baselineCount: Int
    public var windowCount: Int
    public var signals: [DriftSignal]
    /// The worst signal's status; `ok` when every signal was skipped (no evidence of drift either way: see
    /// `judged`).
    public var status: DriftStatus { max(.ok, signals.map(\.status).max() ?? .ok) }
    /// Whether any signal had enough requests to be judged.
    public var judged: Bool { signals.contains { $0.status != .skipped } }
}

/// Compares a window of traffic with a baseline, signal by signal. Deterministic for a seed.
public enum DriftAnalyzer {
    /// `embed`, when given (a local model's mean-pooled hidden states), gives the prompt vectors of the kernel
    /// test instead of the hashed ones; it is asked only for the test's sample.
    public static func analyze(baseline: [DriftObservation], window: [DriftObservation], thresholds t: DriftThresholds = .init(),
                               seed: UInt64 = 1, embed: ((DriftObservation) -> [Float]?)? = nil) -> DriftResult {
        var rng = SeededRandom(seed: seed)
        let b = sample(baseline, t.sample, &rng), w = sample(window, t.sample, &rng)
        var signals: [DriftSignal] = []
        let enough = b.count >= t.minObservations && w.count >= t.minObservations

        func graded(_ name: String, _ score: Double?, _ p: Double?, warn: Double, alert: Double, _ detail: String) -> DriftSignal {
            guard enough, let score else {
                return DriftSignal(name: name, score: score, warn: warn, alert: alert, pValue: p, status: .skipped,
                                   detail: enough ? detail : "fewer than \(t.minObservations) requests on a side")
            }
            let significant = p.map { $0 < t.alpha } ?? true
            let status: DriftStatus = !significant ? .ok : score >= alert ? .alert : score >= warn ? .warn : .ok
            return DriftSignal(name: name, score: score, warn: warn, alert: alert, pValue: p, status: status, detail: detail)
        }

        // Lengths: PSI over deciles of both samples together, so a permutation reuses the bins.
        for (name, values) in [("prompt_length", { (o: DriftObservation) in o.promptLength }),
                               ("answer_length", { (o: DriftObservation) -> Double? in o.answerLength })] as [(String, (DriftObservation) -> Double?)] {
            let x = b.compactMap(values), y = w.compactMap(values)
            guard x.count >= t.minObservations, y.count >= t.minObservations else {
                signals.append(graded(name, nil, nil, warn: t.psiWarn, alert: t.psiAlert, "no \(name.replacingOccurrences(of: "_", with: " ")) on a side"))
                continue
            }
            let edges = quantileEdges(x + y, bins: 10)
            let score = psi(x, y, edges)
            let p = permutationP(x + y, split: x.count, observed: score, t.permutations, &rng) { psi($0, $1, edges) }
            let detail = String(format: "median %.0f → %.0f characters", median(x), median(y))
            signals.append(graded(name, score, p, warn: t.psiWarn, alert: t.psiAlert, detail))
        }

        // Character trigrams (what is being talked about, and in which words).
        let buckets = DriftObservation.ngramBuckets
        let gramScore = jsDistance(histogram(b.map(\.ngrams), buckets), histogram(w.map(\.ngrams), buckets))
        let gramP = permutationP(b.map(\.ngrams) + w.map(\.ngrams), split: b.count, observed: gramScore, t.permutations, &rng) {
            jsDistance(histogram($0, buckets), histogram($1, buckets))
        }
        signals.append(graded("prompt_trigrams", gramScore, gramP, warn: t.jsWarn, alert: t.jsAlert,
                              "Jensen–Shannon distance of hashed character trigrams"))

        // Token unigrams under the local model's tokenizer, when both sides were tokenized.
        let tb = b.compactMap(\.tokens), tw = w.compactMap(\.tokens)
        if tb.count == b.count, tw.count == w.count, !tb.isEmpty, !tw.isEmpty {
            let size = DriftObservation.tokenBuckets
            let tokenScore = jsDistance(histogram(tb, size), histogram(tw, size))
            let tokenP = permutationP(tb + tw, split: tb.count, observed: tokenScore, t.permutations, &rng) {
                jsDistance(histogram($0, size), histogram($1, size))
            }
            signals.append(graded("prompt_tokens", tokenScore, tokenP, warn: t.jsWarn, alert: t.jsAlert,
                                  "Jensen–Shannon distance of the local model's token unigrams"))
        }

        // Script mix.
        let scripts = Array(Set(b.map(\.script) + w.map(\.script))).sorted()
        let index = Dictionary(uniqueKeysWithValues: scripts.enumerated().map { ($1, $0) })
        let sb = b.map { [UInt16(index[$0.script]!)] }, sw = w.map { [UInt16(index[$0.script]!)] }
        let scriptScore = jsDistance(histogram(sb, scripts.count), histogram(sw, scripts.count))
        let scriptP = permutationP(sb + sw, split: sb.count, observed: scriptScore, t.permutations, &rng) {
            jsDistance(histogram($0, scripts.count), histogram($1, scripts.count))
        }
        signals.append(graded("script_mix", scriptScore, scriptP, warn: t.jsWarn, alert: t.jsAlert,
                              "baseline " + mix(b.map(\.script)) + "; window " + mix(w.map(\.script))))

        // New tools and system prompts: the share of the window's requests with one the baseline never had.
        let knownTools = Set(baseline.flatMap(\.tools))
        let newTools = window.filter { $0.tools.contains { !knownTools.contains($0) } }
        let newNames = Set(newTools.flatMap(\.tools)).subtracting(knownTools).sorted()
        var toolSignal = graded("new_tools", window.isEmpty ? nil : Double(newTools.count) / Double(window.count), nil,
                                warn: t.newShareWarn, alert: t.newShareAlert,
                                newNames.isEmpty ? "none" : "new: " + newNames.prefix(5).joined(separator: ", "))
        if newTools.count < 3 && toolSignal.status > .ok { toolSignal.status = .ok }
        let windowTools = Set(window.flatMap(\.tools))
        let vanished = Dictionary(grouping: baseline.flatMap(\.tools), by: { $0 }).filter { name, uses in
            Double(uses.count) >= 0.05 * Double(baseline.count) && !windowTools.contains(name)
        }.keys.sorted()
        if !vanished.isEmpty && enough {
            toolSignal.status = max(toolSignal.status, .warn)
            toolSignal.detail += "; vanished: " + vanished.prefix(5).joined(separator: ", ")
        }
        signals.append(toolSignal)
        let knownSystems = Set(baseline.compactMap(\.systemPrompt))
        let newSystems = window.filter { $0.systemPrompt.map { !knownSystems.contains($0) } ?? false }
        var systemSignal = graded("new_system_prompts", window.isEmpty ? nil : Double(newSystems.count) / Double(window.count), nil,
                                  warn: t.newShareWarn, alert: t.newShareAlert,
                                  "\(Set(newSystems.compactMap(\.systemPrompt)).count) system prompts the baseline never had")
        if newSystems.count < 3 && systemSignal.status > .ok { systemSignal.status = .ok }
        signals.append(systemSignal)

        // Outcome rates, where both sides know them (log windows).
        for (name, outcome) in [("error_rate", \DriftObservation.failed), ("refusal_rate", \DriftObservation.refused),
                                ("rejection_rate", \DriftObservation.rejected)] as [(String, KeyPath<DriftObservation, Bool?>)] {
            let x = baseline.compactMap { $0[keyPath: outcome] }, y = window.compactMap { $0[keyPath: outcome] }
            guard !x.isEmpty, !y.isEmpty else {
                let exportBaseline = !baseline.isEmpty && baseline.allSatisfy { $0.failed == nil }
                signals.append(DriftSignal(name: name, score: nil, warn: t.rateWarn, alert: t.rateAlert, pValue: nil, status: .skipped,
                                           detail: exportBaseline ? "not known for an export" : "no requests on a side"))
                continue
            }
            let p1 = Double(x.filter { $0 }.count) / Double(x.count), p2 = Double(y.filter { $0 }.count) / Double(y.count)
            let p = twoProportionP(p1, x.count, p2, y.count)
            signals.append(graded(name, p2 - p1, p, warn: t.rateWarn, alert: t.rateAlert,
                                  String(format: "%.1f%% → %.1f%%", p1 * 100, p2 * 100)))
        }

        // The prompts as vectors: a kernel two-sample test.
        func vectors(_ items: [DriftObservation]) -> [[Float]] {
            guard let embed else { return items.map(\.vector) }
            return items.compactMap(embed)
        }
        let vb = vectors(sample(b, t.mmdSample, &rng)), vw = vectors(sample(w, t.mmdSample, &rng))
        if vb.count >= t.minObservations && vw.count >= t.minObservations {
            let (score, p) = mmdTest(vb, vw, permutations: t.permutations, &rng)
            let status: DriftStatus = p >= t.alpha || !enough ? .ok : score >= t.mmdAlert ? .alert : .warn
            signals.append(DriftSignal(name: "prompt_embedding_mmd", score: score, warn: 0, alert: t.mmdAlert, pValue: p, status: status,
                                       detail: embed == nil ? "squared MMD of hashed word and trigram vectors (RBF kernel)"
                                                            : "squared MMD of the local model's mean-pooled hidden states (RBF kernel)"))
        } else {
            signals.append(DriftSignal(name: "prompt_embedding_mmd", score: nil, warn: 0, alert: t.mmdAlert, pValue: nil, status: .skipped,
                                       detail: "fewer than \(t.minObservations) requests on a side"))
        }
        return DriftResult(baselineCount: baseline.count, windowCount: window.count, signals: signals)
    }

    // MARK: statistics

    /// A uniform sample of `cap` of `items` (all of them when they fit), drawn with `rng`.
    static func sample<T>(_ items: [T], _ cap: Int, _ rng: inout SeededRandom) -> [T] {
        guard items.count > cap else { return items }
        var reservoir = Reservoir<T>(cap: cap, rng: rng)
        for item in items { reservoir.add(item) }
        rng = reservoir.rng
        return reservoir.items
    }

    static func median(_ x: [Double]) -> Double {
        let s = x.sorted()
        return s.isEmpty ? 0 : s[s.count / 2]
    }

    /// Inner bin edges at the deciles of `values` (duplicates removed).
    static func quantileEdges(_ values: [Double], bins: Int) -> [Double] {
        let s = values.sorted()
        guard !s.isEmpty else { return [] }
        var edges: [Double] = []
        for k in 1..<bins {
            let e = s[min(s.count - 1, k * s.count / bins)]
            if edges.last != e { edges.append(e) }
        }
        return edges
    }

    /// PSI = Σ (window share − baseline share) · ln(window share / baseline share), shares floored at 1e-4.
    static func psi(_ x: [Double], _ y: [Double], _ edges: [Double]) -> Double {
        func shares(_ v: [Double]) -> [Double] {
            var counts = [Double](repeating: 0, count: edges.count + 1)
            for value in v {
                var lo = 0, hi = edges.count
                while lo < hi { let mid = (lo + hi) / 2; if value < edges[mid] { hi = mid } else { lo = mid + 1 } }
                counts[lo] += 1
            }
            return counts.map { max($0 / Double(max(1, v.count)), 1e-4) }
        }
        let a = shares(x), b = shares(y)
        return zip(a, b).reduce(0) { $0 + ($1.1 - $1.0) * log($1.1 / $1.0) }
    }

    static func histogram(_ items: [[UInt16]], _ size: Int) -> [Double] {
        var h = [Double](repeating: 0, count: max(1, size))
        for item in items { for i in item { h[Int(i)] += 1 } }
        return h
    }

    /// Jensen–Shannon distance, natural log (0 for equal distributions, at most √ln 2).
    static func jsDistance(_ p: [Double], _ q: [Double]) -> Double {
        let sp = p.reduce(0, +), sq = q.reduce(0, +)
        guard sp > 0, sq > 0 else { return 0 }
        var divergence = 0.0
        for (a, b) in zip(p, q) {
            let pa = a / sp, qb = b / sq, m = (pa + qb) / 2
            if pa > 0 { divergence += 0.5 * pa * log(pa / m) }
            if qb > 0 { divergence += 0.5 * qb * log(qb / m) }
        }
        return max(0, divergence).squareRoot()
    }

    /// The share of label permutations of `pooled` (first `split` as the baseline) whose statistic reaches the
    /// observed one, with the observed counted (so never 0).
    static func permutationP<T>(_ pooled: [T], split: Int, observed: Double, _ count: Int, _ rng: inout SeededRandom,
                                _ statistic: ([T], [T]) -> Double) -> Double {
        guard count > 0, split > 0, split < pooled.count else { return 1 }
        var items = pooled
        var reached = 0
        for _ in 0..<count {
            for i in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            if statistic(Array(items[..<split]), Array(items[split...])) >= observed - 1e-12 { reached += 1 }
        }
        return Double(reached + 1) / Double(count + 1)
    }

    /// One-sided p-value of a rise from `p1` (n1) to `p2` (n2): the two-proportion z-test.
    static func twoProportionP(_ p1: Double, _ n1: Int, _ p2: Double, _ n2: Int) -> Double {
        let pooled = (p1 * Double(n1) + p2 * Double(n2)) / Double(n1 + n2)
        let se = (pooled * (1 - pooled) * (1 / Double(n1) + 1 / Double(n2))).squareRoot()
        guard se > 0 else { return p2 > p1 ? 0 : 1 }
        let z = (p2 - p1) / se
        return 0.5 * erfc(z / 2.0.squareRoot())
    }

    /// The squared maximum mean discrepancy (biased estimate) with an RBF kernel whose width is the median
    /// pairwise distance, and its permutation p-value (the kernel matrix computed once).
    static func mmdTest(_ x: [[Float]], _ y: [[Float]], permutations: Int, _ rng: inout SeededRandom) -> (Double, Double) {
        let all = x + y, n = all.count
        var d2 = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in (i + 1)..<n {
                var s: Float = 0
                for k in 0..<all[i].count { let d = all[i][k] - all[j][k]; s += d * d }
                d2[i * n + j] = s
                d2[j * n + i] = s
            }
        }
        var upper: [Float] = []
        upper.reserveCapacity(n * (n - 1) / 2)
        for i in 0..<n { for j in (i + 1)..<n { upper.append(d2[i * n + j]) } }
        upper.sort()
        let width = max(upper.isEmpty ? 1 : upper[upper.count / 2], 1e-6)
        let k = d2.map { exp(-$0 / width) }
        // Within-group sums over index lists: n² additions a permutation, no branches.
        func mmd(_ labels: [Bool]) -> Double {
            var xs: [Int] = [], ys: [Int] = []
            xs.reserveCapacity(n)
            ys.reserveCapacity(n)
            for i in 0..<n { if labels[i] { xs.append(i) } else { ys.append(i) } }
            return k.withUnsafeBufferPointer { kp -> Double in
                var all: Float = 0, xx: Float = 0, yy: Float = 0
                for i in 0..<n * n { all += kp[i] }
                for i in xs { let row = i * n; for j in xs { xx += kp[row + j] } }
                for i in ys { let row = i * n; for j in ys { yy += kp[row + j] } }
                let xy = Double(all - xx - yy) / 2
                let nx = Double(xs.count), ny = Double(ys.count)
                return Double(xx) / (nx * nx) + Double(yy) / (ny * ny) - 2 * xy / (nx * ny)
            }
        }
        var labels = [Bool](repeating: false, count: n)
        for i in 0..<x.count { labels[i] = true }
        let observed = mmd(labels)
        var reached = 0
        for _ in 0..<permutations {
            for i in stride(from: n - 1, to: 0, by: -1) { labels.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            if mmd(labels) >= observed - 1e-12 { reached += 1 }
        }
        return (observed, Double(reached + 1) / Double(permutations + 1))
    }

    static func mix(_ scripts: [String]) -> String {
        let counts = Dictionary(grouping: scripts, by: { $0 }).mapValues(\.count).sorted { ($1.value, $0.key) < ($0.value, $1.key) }
        return counts.prefix(3).map { "\($0.key) \(Int((Double($0.value) / Double(max(1, scripts.count)) * 100).rounded()))%" }
            .joined(separator: ", ")
    }
}

/// splitmix64: a small seeded generator, so every drift check gives the same answer for the same data.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return NearDuplicateIndex.mix(state)
    }
}
