import Dispatch
import FlywheelConfig
import FlywheelGateway
import FlywheelLoop
import FlywheelStore
import Foundation
import Synchronization

/// Computes the dashboard's log-based figures (the last hour's report: acceptance, cost, savings per model,
/// route and variant) every few seconds on a thread of its own, only while a dashboard is watching.
final class DashboardJob: Sendable {
    private let gateway: Gateway
    private let path: String
    private let rates: @Sendable (String) -> UsageReport.Price?
    private let stop = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let running = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    static let interval = 5.0

    init(gateway: Gateway, configuration: GatewayConfiguration) {
        self.gateway = gateway
        self.path = configuration.log.path
        self.rates = UsageReport.upstreamRates(prices: configuration.prices, policies: configuration.policies)
    }

    func start() {
        guard !running.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            var reader: SQLiteLogReader?
            while stop.wait(timeout: .now() + Self.interval) == .timedOut {
                guard gateway.dashboardWatched(within: 60) else { continue }
                do {
                    if reader == nil { reader = try SQLiteLogReader(path: path) }
                    var filter = RequestFilter()
                    filter.createdFrom = Int64((Date().timeIntervalSince1970 - 3_600) * 1000)
                    filter.shadows = false
                    let report = try UsageReport(queries: reader!, filter: filter, baselineFor: rates)
                    gateway.setDashboardReport(report.json(from: "1h", until: nil))
                } catch {
                    reader = nil
                }
            }
            finished.signal()
        }
        thread.name = "flywheel-dashboard"
        thread.qualityOfService = .background
        thread.start()
    }

    func shutdown() {
        guard running.load(ordering: .relaxed), !stopped.exchange(true, ordering: .relaxed) else { return }
        stop.signal()
        finished.wait()
    }
}
