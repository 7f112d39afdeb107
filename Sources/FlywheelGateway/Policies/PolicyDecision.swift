import FlywheelConfig
import FlywheelHTTP
import FlywheelJSON

/// What a traffic policy decided for one request: the target, why, and the fallbacks tried before the one
/// that answered. Logged with the request (`variant`, `decision`) and shown in response headers.
struct PolicyDecision: Sendable {
    enum Reason: String, Sendable {
        /// Drawn by weight (sticky to a caller when the request carries a sticky key).
        case split
        /// Chosen by the request's `x-flywheel-variant` header.
        case override
        /// A shadow run: the same request on the policy's shadow target, logged beside the answer, never returned.
        case shadow
    }

    /// A target that gave way to the next, and why (`overloaded`, `upstream_status_503`, `first_token_budget`, ...).
    struct Attempt: Sendable {
        var target: String
        var reason: String
    }

    var policy: String
    var reason: Reason
    /// The sticky key kind used (`user`, `episode`, `tag`), or nil when the request was drawn on its own.
    var stickyKey: String?
    /// The caller's position in [0, 1): variants own consecutive ranges of it, in the order listed.
    var bucket: Double
    /// The variant chosen by the split or the override.
    var chosen: String
    /// The target answering now: `chosen`, or a fallback after `tried`.
    var target: String
    var tried: [Attempt] = []
    /// For a shadow run, the request it shadows.
    var shadowOf: String?

    static let overrideHeader = "x-flywheel-variant"

    /// The policy's choice for a request. Throws for an override that names no target of the policy.
    static func decide(_ policy: GatewayConfiguration.TrafficPolicy, headers: HTTPHeaders, user: String?, episode: String?,
                       tags: [String], requestID: String) throws(OpenAIError) -> PolicyDecision {
        var stickyKey: String?
        var key = requestID
        for kind in policy.sticky {
            let value: String?
            switch kind {
            case .user: value = user
            case .episode: value = episode
            case .tag: value = tags.first
            }
            if let value, !value.isEmpty {
                stickyKey = kind.rawValue
                key = kind.rawValue + "\u{0}" + value
                break
            }
        }
        let bucket = Self.bucket(policy: policy.model, key: key)
        let overrides = headers.values(overrideHeader)
        if overrides.count > 1 {
            throw .invalidRequest("Send \(overrideHeader) once.", param: overrideHeader)
        }
        if let wanted = overrides.first {
            guard policy.allowOverride else {
                throw .invalidRequest("The traffic policy for '\(policy.model)' does not allow choosing a variant with \(overrideHeader).",
                                      param: overrideHeader)
            }
            guard policy.targets.contains(wanted) else {
                let names = policy.targets.joined(separator: ", ")
                throw .invalidRequest("\(overrideHeader) must name a target of the policy for '\(policy.model)': \(names).",
                                      param: overrideHeader)
            }
            return PolicyDecision(policy: policy.model, reason: .override, stickyKey: nil, bucket: bucket, chosen: wanted, target: wanted)
        }
        let chosen = Self.variant(at: bucket, of: policy.variants)
        return PolicyDecision(policy: policy.model, reason: .split, stickyKey: stickyKey, bucket: bucket, chosen: chosen, target: chosen)
    }

    /// The variant owning `bucket`: variants take consecutive shares of [0, 1) by weight, in the order listed, so
    /// raising the first one's weight only moves callers towards it.
    static func variant(at bucket: Double, of variants: [GatewayConfiguration.TrafficPolicy.Variant]) -> String {
        let total = variants.reduce(0) { $0 + $1.weight }
        var upper = 0.0
        for v in variants where v.weight > 0 {
            upper += v.weight / total
            if bucket < upper { return v.target }
        }
        return variants.last(where: { $0.weight > 0 })!.target
    }

    /// A stable position in [0, 1) for `key` under `policy`: FNV-1a over both, then splitmix64's finaliser. The
    /// same on every machine and after every restart (Swift's `Hasher` is seeded per process), so a caller
    /// stays on its variant.
    static func bucket(policy: String, key: String) -> Double {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in policy.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        h = (h ^ 0xFF) &* 0x0000_0100_0000_01B3
        for byte in key.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        h = (h ^ h >> 30) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ h >> 27) &* 0x94D0_49BB_1331_11EB
        h ^= h >> 31
        return Double(h >> 11) * 0x1p-53
    }

    /// The decision as logged: `{"policy", "reason", "chosen", "sticky", "bucket", "tried": [{"target", "reason"}]}`.
    var json: JSON {
        var o = JSONObject()
        o["policy"] = .string(policy)
        o["reason"] = .string(tried.isEmpty ? reason.rawValue : "fallback")
        o["chosen"] = .string(chosen)
        o["sticky"] = .optional(stickyKey)
        o["bucket"] = .double((bucket * 10_000).rounded() / 10_000)
        o["tried"] = .array(tried.map { ["target": .string($0.target), "reason": .string($0.reason)] })
        if let shadowOf { o["shadow_of"] = .string(shadowOf) }
        return .object(o)
    }

    /// The response headers an operator reads: the target that answered and, in short, why.
    var headers: [(String, String)] {
        var why = reason.rawValue
        if let stickyKey { why += "; sticky=\(stickyKey)" }
        for attempt in tried { why += "; fallback after \(attempt.target) (\(attempt.reason))" }
        return [("x-flywheel-variant", target), ("x-flywheel-decision", why)]
    }
}
