import FlywheelConfig

/// An authenticated client key: its id (logged with each request) and, for a virtual key, what it may do.
struct ClientKey: Sendable, Equatable {
    var id: String
    /// Model globs the key may use; nil: any model.
    var models: [String]?
    var limits: KeyLimits

    /// Whether the key may use `model` (a requested model name).
    func allows(_ model: String) -> Bool {
        guard let models else { return true }
        return models.contains { ModelPattern($0).matches(model) }
    }
}

/// The limits of one virtual key (nil: none).
struct KeyLimits: Sendable, Equatable {
    var requestsPerMinute: Int?
    var tokensPerMinute: Int?
    var budgetUSD: Double?

    var isEmpty: Bool { requestsPerMinute == nil && tokensPerMinute == nil && budgetUSD == nil }
}
