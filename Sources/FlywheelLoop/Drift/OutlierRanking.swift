import Foundation
import FlywheelJSON

/// Requests of a window ranked by how far they are from the baseline: the distance of the prompt's hashed
/// vector to its nearest baseline neighbour (1 − cosine similarity), plus a fixed weight for each other reason:
/// a prompt or answer length beyond the baseline's extremes, a tool the baseline never offered, a failure of a
/// kind the baseline does not have.
public enum OutlierRanking {
    public struct Outlier: Sendable {
        public var requestID: String
        public var score: Double
        public var distance: Double
        public var reasons: [String]
        public var preview: String
    }

    public static func rank(window: [DriftObservation], baseline: [DriftObservation], limit: Int) -> [Outlier] {
        guard !baseline.isEmpty else { return [] }
        let lengths = baseline.map(\.promptLength).sorted()
        let answers = baseline.compactMap(\.answerLength).sorted()
        func percentile(_ s: [Double], _ p: Double) -> Double? { s.isEmpty ? nil : s[min(s.count - 1, Int(p * Double(s.count)))] }
        let (lowPrompt, highPrompt) = (percentile(lengths, 0.005) ?? 0, percentile(lengths, 0.995) ?? .infinity)
        let highAnswer = percentile(answers, 0.995) ?? .infinity
        let tools = Set(baseline.flatMap(\.tools))
        let errors = Set(baseline.compactMap(\.errorType))
        var out: [Outlier] = []
        for o in window {
            guard let id = o.requestID else { continue }
            var best: Float = -1
            for b in baseline {
                var dot: Float = 0
                for k in 0..<min(o.vector.count, b.vector.count) { dot += o.vector[k] * b.vector[k] }
                best = max(best, dot)
            }
            let distance = Double(1 - best)
            var score = distance
            var reasons: [String] = []
            if o.promptLength > highPrompt * 1.5 || o.promptLength < lowPrompt / 2 {
                reasons.append(String(format: "prompt of %.0f characters (baseline 0.5–99.5%%: %.0f–%.0f)", o.promptLength, lowPrompt, highPrompt))
                score += 0.5
            }
            if let a = o.answerLength, a > highAnswer * 1.5 {
                reasons.append(String(format: "answer of %.0f characters (baseline 99.5%%: %.0f)", a, highAnswer))
                score += 0.5
            }
            let unseen = o.tools.filter { !tools.contains($0) }
            if !unseen.isEmpty {
                reasons.append("tools the baseline never had: " + unseen.joined(separator: ", "))
                score += 0.5
            }
            if o.failed == true {
                let kind = o.errorType ?? "error"
                reasons.append(errors.contains(kind) ? "failed (\(kind))" : "failed with an error the baseline never had (\(kind))")
                score += errors.contains(kind) ? 0.1 : 0.3
            }
            reasons.insert(String(format: "nearest baseline prompt at distance %.2f", distance), at: 0)
            out.append(Outlier(requestID: id, score: score, distance: distance, reasons: reasons, preview: o.preview ?? ""))
        }
        return Array(out.sorted { ($0.score, $1.requestID) > ($1.score, $0.requestID) }.prefix(max(0, limit)))
    }
}

/// Corrections ranked by what they are worth for the next training run: the reviewer's weight (sent with the
/// feedback, else 1), how far the correction is from the model's answer (word-set Jaccard distance), and how rare
/// the prompt is among the corrections (1 − its greatest cosine similarity to another one's).
public enum CorrectionRanking {
    public struct Correction: Sendable {
        public var requestID: String
        public var score: Double
        public var weight: Double
        public var change: Double
        public var rarity: Double
        public var source: String?
        public var preview: String
        public var correction: String
    }

    public struct Candidate: Sendable {
        public var requestID: String
        public var prompt: DriftObservation
        public var answer: String
        public var correction: String
        public var weight: Double?
        public var source: String?
        public init(requestID: String, prompt: DriftObservation, answer: String, correction: String, weight: Double?, source: String?) {
            self.requestID = requestID
            self.prompt = prompt
            self.answer = answer
            self.correction = correction
            self.weight = weight
            self.source = source
        }
    }

    public static func rank(_ candidates: [Candidate], limit: Int) -> [Correction] {
        func words(_ s: String) -> Set<String> { Set(s.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)) }
        var out: [Correction] = []
        for (i, c) in candidates.enumerated() {
            let a = words(c.answer), b = words(c.correction)
            let union = a.union(b).count
            let change = union == 0 ? 0 : 1 - Double(a.intersection(b).count) / Double(union)
            var nearest: Float = 0
            for (j, other) in candidates.enumerated() where j != i {
                var dot: Float = 0
                for k in 0..<min(c.prompt.vector.count, other.prompt.vector.count) { dot += c.prompt.vector[k] * other.prompt.vector[k] }
                nearest = max(nearest, dot)
            }
            let rarity = Double(1 - nearest)
            let weight = min(max(c.weight ?? 1, 0), 1_000)  // a weight is a reviewer's trust, not a lever
            out.append(Correction(requestID: c.requestID, score: weight * (0.5 + change) * (0.5 + rarity), weight: weight, change: change,
                                  rarity: rarity, source: c.source, preview: c.prompt.preview ?? "", correction: c.correction))
        }
        return Array(out.sorted { ($0.score, $1.requestID) > ($1.score, $0.requestID) }.prefix(max(0, limit)))
    }
}
