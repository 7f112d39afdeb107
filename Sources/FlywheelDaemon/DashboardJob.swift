import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelJSON
import FlywheelLoop
import FlywheelStore
import Foundation
import Synchronization

/// Computes the dashboard's log-based figures (the last hour's report: acceptance, cost, savings per model,
/// route and variant) every few seconds on a thread of its own, only while a dashboard is watching.
final class DashboardJob: Sendable {
    private let gateway: Gateway
    private let path: String
    /// The savings' rates, from the prices and policies in force (both change with a reload).
    private var rates: @Sendable (String) -> UsageReport.Price? {
        let c = gateway.configuration
        return UsageReport.upstreamRates(prices: c.prices, policies: c.policies)
    }
    private let loop = BackgroundLoop(name: "flywheel-dashboard", interval: 5)

    init(gateway: Gateway, configuration: GatewayConfiguration) {
        self.gateway = gateway
        self.path = configuration.log.path
    }

    func start() {
        loop.start { [self] in
            var reader: SQLiteLogReader?
            return {
                guard self.gateway.dashboardWatched(within: 60) else { return }
                do {
                    if reader == nil { reader = try SQLiteLogReader(path: self.path) }
                    var filter = RequestFilter()
                    filter.createdFrom = Int64((Date().timeIntervalSince1970 - 3_600) * 1000)
                    filter.shadows = false
                    let report = try UsageReport(queries: reader!, filter: filter, baselineFor: self.rates)
                    self.gateway.setDashboardReport(report.json(from: "1h", until: nil))
                } catch {
                    reader = nil
                }
            }
        }
    }

    func shutdown() { loop.shutdown() }
}
