import FlywheelConfig

/// Everything a request reads from the configuration, built once from one `GatewayConfiguration` and never
/// changed: the routes, the webhook signature, the prices and the limits (client keys live in the gateway's
/// `APIKeyAuthenticator`, which also holds the log's virtual keys; `setAuth` swaps the configured ones). The gateway holds
/// one and swaps it whole on a reload; a request takes the one in force when it arrives (`GatewayRequest`,
/// `RequestContext`) and keeps it to its end, so it never sees half of an old and half of a new configuration.
public final class GatewaySettings: Sendable {
    public let configuration: GatewayConfiguration
    let router: ModelRouter
    let signature: WebhookSignature?
    let prices: PriceTable

    public init(_ configuration: GatewayConfiguration) {
        self.configuration = configuration
        router = ModelRouter(configuration: configuration)
        signature = configuration.feedback.webhookSecret.map {
            WebhookSignature(secret: $0, tolerance: configuration.feedback.signatureTolerance)
        }
        prices = PriceTable(configuration.prices)
    }
}
