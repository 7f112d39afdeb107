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
            Reads the log (it never needs the daemon). Times are ISO 8601 (2026-11-30, 2026-11-30T12:00:00Z) or \
            relative to now (90m, 24h, 7d). With --config and --baseline-model, answers of the route 'local' are \
            priced at that model's rates from the config's prices, and the report shows what they saved.
            """)

    @Option(name: .long, help: "SQLite log file.")
    var db: String = "flywheel.db"

    @Option(name: .long, help: "Only requests at or after this time (default: the whole log).")
    var since: String?

    @Option(name: .long, help: "Only requests before this time.")
    var until: String?

    @Option(name: .long, help: "Only requests for this model (requested or served).")
    var model: String?

    @Option(name: .long, help: "Only requests handled by this route.")
    var route: String?

    @Option(name: .long, help: "Only requests carrying this tag.")
    var tag: String?

    @Option(name: .long, help: "Configuration file whose prices price --baseline-model.")
    var config: String?

    @Option(name: .long, help: "Price local answers at this model's rates (from --config's prices) to show the savings.")
    var baselineModel: String?

    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        var filter = RequestFilter(model: model, route: route, tag: tag)
        let now = Date()
        do {
            filter.createdFrom = try since.map { try Self.millis($0, now: now) }
            filter.createdBefore = try until.map { try Self.millis($0, now: now) }
        } catch {
            throw ValidationError("\(error)")
        }
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
            baseline = UsageReport.Price(input: price.input, output: price.output)
        }
        let reader: SQLiteLogReader
        do {
            reader = try SQLiteLogReader(path: db)
        } catch {
            Console.error("flywheel: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
        let report = try UsageReport(queries: reader, filter: filter, baseline: baseline)
        if json {
            Console.line(report.json(from: since, until: until).serializedString())
        } else {
            Console.line(report.table())
        }
    }

    struct TimeError: Error, CustomStringConvertible {
        var text: String
        var description: String { "'\(text)' is not a time: use ISO 8601 (2026-11-30 or 2026-11-30T12:00:00Z) or 90m, 24h, 7d" }
    }

    /// Unix milliseconds of an ISO 8601 date or date-time, or of now minus a number of minutes, hours or days.
    static func millis(_ text: String, now: Date) throws -> Int64 {
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0, amount < 1e7 {
            let seconds: Double? = switch unit {
            case "m": amount * 60
            case "h": amount * 3_600
            case "d": amount * 86_400
            default: nil
            }
            if let seconds { return Int64((now.timeIntervalSince1970 - seconds) * 1000) }
        }
        let full = ISO8601DateFormatter()
        if let date = full.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if let date = day.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        throw TimeError(text: text)
    }
}
