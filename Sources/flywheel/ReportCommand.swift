import ArgumentParser
import Foundation
import FlywheelConfig
import FlywheelInspect
import FlywheelLoop
import FlywheelStore

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Requests, tokens, errors, latency, acceptance and cost per model, route and variant.",
        discussion: """
            Reads the log (it never needs the daemon). Rows are per model, route and policy variant. With --config, \
            answers of the route 'local' are priced at the rates of the upstream model they stand in for (the requested \
            model when it has a price, else the first priced variant of its traffic policy), or with --baseline-model \
            at that model's rates, and the report shows what they saved.
            """)

    @OptionGroup var log: LogSelection

    @Option(name: .long, help: "Configuration file whose prices price --baseline-model.")
    var config: String?

    @Option(name: .long, help: "Price local answers at this model's rates (from --config's prices) to show the savings.")
    var baselineModel: String?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        let filter = try log.filter()
        if baselineModel != nil, config == nil {
            throw ValidationError("--baseline-model needs --config (its prices price the model)")
        }
        var rates: (String) -> UsageReport.Price? = { _ in nil }
        if let config {
            let settings = try ConfigReading.load(config)
            if let baselineModel {
                guard let price = settings.prices[baselineModel] else {
                    throw ValidationError("no price for '\(baselineModel)' in \(config); add it under prices")
                }
                rates = { _ in price }
            } else {
                rates = UsageReport.upstreamRates(prices: settings.prices, policies: settings.policies)
            }
        }
        let reader = try log.openReader()
        let report = try UsageReport(queries: reader, filter: filter, baselineFor: rates)
        if json {
            Console.line(report.json(from: log.since, until: log.until).serializedString())
        } else {
            Console.line(report.table())
        }
    }
}
