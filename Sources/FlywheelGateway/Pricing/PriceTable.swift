import FlywheelConfig

/// Estimates what a request cost from its token usage, with prices in USD per one million tokens.
public struct PriceTable: Sendable {
    private let prices: [String: GatewayConfiguration.Price]

    public init(_ prices: [String: GatewayConfiguration.Price]) { self.prices = prices }

    /// The cost in USD, priced by the requested model's name first (the caller passes a policy's target in its
    /// place), then by the served model's; nil when neither has a price or usage is unknown.
    public func cost(requestedModel: String?, servedModel: String?, promptTokens: Int?, completionTokens: Int?) -> Double? {
        guard promptTokens != nil || completionTokens != nil else { return nil }
        let price = requestedModel.flatMap { prices[$0] } ?? servedModel.flatMap { prices[$0] }
        return price?.cost(promptTokens: promptTokens ?? 0, completionTokens: completionTokens ?? 0)
    }
}
