import FlywheelConfig
import FlywheelJSON
import FlywheelStore

/// The split of a traffic policy as the policy-change log holds it, and the arithmetic of changing it.
public enum PolicySplit {
    public typealias Variant = GatewayConfiguration.TrafficPolicy.Variant

    public static func encode(_ variants: [Variant]) -> String {
        JSON.array(variants.map { ["target": .string($0.target), "weight": .double($0.weight)] }).serializedString()
    }

    public static func decode(_ text: String) -> [Variant]? {
        guard let items = (try? JSONParser.parse(text, limits: .depthOnly))?.arrayValue else { return nil }
        var out: [Variant] = []
        for item in items {
            guard let target = item["target"]?.stringValue, let weight = item["weight"]?.doubleValue, weight >= 0, weight.isFinite else { return nil }
            out.append(Variant(target: target, weight: weight))
        }
        return out.isEmpty ? nil : out
    }

    /// Weights as percentages of their sum (rounded to 0.01), order kept.
    public static func normalized(_ variants: [Variant]) -> [Variant] {
        let total = variants.reduce(0) { $0 + $1.weight }
        guard total > 0 else { return variants }
        return variants.map { Variant(target: $0.target, weight: (($0.weight / total) * 10_000).rounded() / 100) }
    }

    /// `target` at `percent`, the other variants sharing the rest in proportion to their weights now (equally
    /// when they all have none). The order is kept, so sticky callers only move towards a target that grows.
    public static func setting(_ target: String, to percent: Double, in variants: [Variant]) throws -> [Variant] {
        guard percent >= 0, percent <= 100, percent.isFinite else { throw PromotionError("the weight must be 0...100 (percent)") }
        guard variants.contains(where: { $0.target == target }) else {
            throw PromotionError("'\(target)' is not a variant of this policy (variants: \(variants.map(\.target).joined(separator: ", ")))")
        }
        let others = variants.filter { $0.target != target }
        let rest = 100 - percent
        guard rest == 0 || !others.isEmpty else { throw PromotionError("'\(target)' is the only variant: its weight can only be 100") }
        let othersTotal = others.reduce(0) { $0 + $1.weight }
        return variants.map { v in
            if v.target == target { return Variant(target: target, weight: percent) }
            let share = othersTotal > 0 ? v.weight / othersTotal : 1 / Double(others.count)
            return Variant(target: v.target, weight: (share * rest * 100).rounded() / 100)
        }
    }

    /// The policies in force: each configured policy with the split of its newest change, when that change
    /// names the same targets (a change made for an older configuration is ignored).
    public static func effective(_ configured: [GatewayConfiguration.TrafficPolicy],
                                 latest: [String: PolicyChange]) -> [GatewayConfiguration.TrafficPolicy] {
        configured.map { policy in
            guard let change = latest[policy.model], let variants = fitting(change, policy) else { return policy }
            var p = policy
            p.variants = variants
            return p
        }
    }

    /// Whether `change` can stand as `policy`'s split: readable, naming the same targets, some weight above 0.
    public static func fits(_ change: PolicyChange, _ policy: GatewayConfiguration.TrafficPolicy) -> Bool {
        fitting(change, policy) != nil
    }

    /// The split of `change` when it can stand as `policy`'s (see `fits`), else nil.
    static func fitting(_ change: PolicyChange, _ policy: GatewayConfiguration.TrafficPolicy) -> [Variant]? {
        guard let variants = decode(change.variantsJSON),
              Set(variants.map(\.target)) == Set(policy.variants.map(\.target)),
              variants.contains(where: { $0.weight > 0 }) else { return nil }
        return variants
    }

    /// A short human form: `ticket-router 25%, gpt-4o-mini 75%`.
    public static func describe(_ variants: [Variant]) -> String {
        normalized(variants).map { "\($0.target) \($0.weight.percentText)%" }.joined(separator: ", ")
    }
}

public struct PromotionError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Double {
    /// `25`, `12.5`: no trailing zeros.
    public var percentText: String {
        self == rounded() ? String(Int(self)) : String(format: "%.2f", self).replacingOccurrences(of: #"\.?0+$"#, with: "", options: .regularExpression)
    }
}
