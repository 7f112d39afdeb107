import FlywheelConfig

/// Estimates what a request cost from its token usage, with prices in USD per one million tokens.
public struct PriceTable: Sendable {
    private let prices: [String: GatewayConfiguration.Price]

    public init(_ prices: [String: GatewayConfiguration.Price]) { self.prices = prices }

    /// The cost in USD, priced by the requested model's name first, then by the served model's; nil when
    /// neither has a price or usage is unknown.
    public func cost(requestedModel: String?, servedModel: String?, promptTokens: Int?, completionTokens: Int?) -> Double? {
        guard promptTokens != nil || completionTokens != nil else { return nil }
        let price = requestedModel.flatMap { prices[$0] } ?? servedModel.flatMap { prices[$0] }
        guard let price else { return nil }
        let input = Double(promptTokens ?? 0) * price.input
        let output = Double(completionTokens ?? 0) * price.output
        return (input + output) / 1_000_000
    }
}
