/// How long logged requests are kept: a number of days, or for ever. Written `30` or `forever` in the YAML.
public enum RetentionPeriod: Sendable, Equatable, Comparable, Decodable, CustomStringConvertible {
    case days(Int)
    case forever

    /// As the configuration writes it: a number of days, or `forever`.
    public var description: String {
        switch self {
        case .days(let d): return "\(d)"
        case .forever: return "forever"
        }
    }

    /// The longest period `retention_days` accepts (a century).
    public static let maxDays = 36_500

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let days = try? container.decode(Int.self) {
            self = .days(days)
        } else if let word = try? container.decode(String.self), word == "forever" {
            self = .forever
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "expected a whole number of days or 'forever'")
        }
    }

    /// The cutoff in unix milliseconds for rows checked at `nowMillis` (older rows go); nil for ever.
    public func cutoff(nowMillis: Int64) -> Int64? {
        guard case .days(let days) = self else { return nil }
        return nowMillis - Int64(days) * 86_400_000
    }

    public static func < (a: RetentionPeriod, b: RetentionPeriod) -> Bool {
        switch (a, b) {
        case let (.days(x), .days(y)): return x < y
        case (.days, .forever): return true
        default: return false
        }
    }

    var isValid: Bool {
        if case .days(let d) = self { return (1...Self.maxDays).contains(d) }
        return true
    }
}

/// `log.redact`: what the log does to content before storing it.
public enum LogRedaction: String, Sendable, Equatable, CaseIterable {
    /// Stored as sent and answered.
    case none
    /// E-mail addresses, phone, card and IBAN numbers, IP addresses and secrets replaced by placeholders
    /// (`<EMAIL>`, ...), as `flywheel export --scrub-pii` does, on the log writer's thread.
    case pii
}

extension GatewayConfiguration {
    /// The retention of a row whose request named `model`: the local model's own (local models win over routes,
    /// as in routing), else the first route matching the name, else `log.retention_days`; a row with feedback
    /// keeps the longer of that and `log.retention_days_with_feedback`.
    public func retention(model: String?, hasFeedback: Bool) -> RetentionPeriod {
        var base = log.retentionDays
        if let model {
            if let local = localModels.first(where: { $0.name == model }) {
                base = local.retentionDays ?? base
            } else if let route = routes.first(where: { ModelPattern($0.model).matches(model) }) {
                base = route.retentionDays ?? base
            }
        }
        guard hasFeedback, let longer = log.retentionDaysWithFeedback else { return base }
        return max(base, longer)
    }

    /// The shortest retention any row can have (nil: every row is kept for ever, nothing to prune).
    public var shortestRetention: RetentionPeriod? {
        let all = [log.retentionDays] + routes.compactMap(\.retentionDays) + localModels.compactMap(\.retentionDays)
        let shortest = all.min() ?? .forever
        return shortest == .forever ? nil : shortest
    }

    func validateRetention() throws {
        let place = "a whole number of days from 1 to \(RetentionPeriod.maxDays), or forever"
        guard log.retentionDays.isValid else { throw ConfigurationError("log.retention_days must be \(place)") }
        if let f = log.retentionDaysWithFeedback {
            guard f.isValid else { throw ConfigurationError("log.retention_days_with_feedback must be \(place)") }
            // Feedback'd rows are the training data: kept longer than the rest, never shorter.
            guard f >= log.retentionDays else {
                throw ConfigurationError("log.retention_days_with_feedback must be at least log.retention_days (rows with feedback are kept longer, not shorter)")
            }
        }
        for (i, r) in routes.enumerated() where !(r.retentionDays?.isValid ?? true) {
            throw ConfigurationError("routes[\(i)] (\(r.model)): retention_days must be \(place)")
        }
        for m in localModels where !(m.retentionDays?.isValid ?? true) {
            throw ConfigurationError("local_models.\(m.name).retention_days must be \(place)")
        }
        guard log.pruneInterval >= 1, log.pruneInterval <= 86_400 else {
            throw ConfigurationError("log.prune_interval must be 1...86400 seconds")
        }
        guard (1...100_000).contains(log.pruneBatchSize) else { throw ConfigurationError("log.prune_batch_size must be 1...100000") }
    }
}
