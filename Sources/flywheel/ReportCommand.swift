import ArgumentParser
import Foundation
import FlywheelConfig
import FlywheelInspect
import FlywheelLoop
import FlywheelStore

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Requests, tokens, errors, latency, acceptance and cost per model and route.",
        discussion: """
            Reads the log (it never needs the daemon). With --config and --baseline-model, answers of the route 'local' are \
            priced at that model's rates from the config's prices, and the report shows what they saved.
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
        var baseline: UsageReport.Price?
        if let baselineModel {
            guard let config else { throw ValidationError("--baseline-model needs --config (its prices price the model)") }
            let settings: GatewayConfiguration
            do {
                settings = try GatewayConfiguration.load(path: config)
            } catch {
                Console.error("flywheel: error: \(error)")
                throw ExitCode(78)
            }
            guard let price = settings.prices[baselineModel] else {
                throw ValidationError("no price for '\(baselineModel)' in \(config); add it under prices")
            }
            baseline = price
        }
        let reader = try log.openReader()
        let report = try UsageReport(queries: reader, filter: filter, baseline: baseline)
        if json {
            Console.line(report.json(from: log.since, until: log.until).serializedString())
        } else {
            Console.line(report.table())
        }
    }
}
