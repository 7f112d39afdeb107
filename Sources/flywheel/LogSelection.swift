import ArgumentParser
import Foundation
import FlywheelInspect
import FlywheelLoop
import FlywheelStore

/// The options every command that reads the log shares: which file, and which requests of it.
struct LogSelection: ParsableArguments {
    @Option(name: .long, help: "SQLite log file.")
    var db: String = "flywheel.db"

    @Option(name: .long, help: "Only requests at or after this time: ISO 8601 (2026-11-30, 2026-11-30T12:00:00Z) or 90m, 24h, 7d ago.")
    var since: String?

    @Option(name: .long, help: "Only requests before this time.")
    var until: String?

    @Option(name: .long, help: "Only requests for this model (requested or served).")
    var model: String?

    @Option(name: .long, help: "Only requests handled by this route.")
    var route: String?

    @Option(name: .long, help: "Only requests carrying this tag (x-flywheel-tags).")
    var tag: String?

    @Option(name: .long, help: "Only the requests of this episode (x-flywheel-episode or metadata.episode_id).")
    var episode: String?

    @Option(name: .long, help: "Only requests a traffic policy sent to this target (its variant).")
    var variant: String?

    @Option(name: .long, help: "Only requests made with this client key (its id: a virtual key's or auth.keys' id).")
    var key: String?

    @Option(name: .long, help: "Shadow runs (a policy's second answer, never returned): include (default), exclude or only.")
    var shadows: String = "include"

    /// The filter these options describe; a time that cannot be read is a usage error naming it.
    func filter(now: Date = Date()) throws -> RequestFilter {
        var filter = RequestFilter(model: model, route: route, tag: tag)
        filter.episode = episode
        filter.variant = variant
        filter.clientKey = key
        switch shadows {
        case "include": filter.shadows = nil
        case "exclude": filter.shadows = false
        case "only": filter.shadows = true
        default: throw ValidationError("--shadows must be include, exclude or only")
        }
        do {
            filter.createdFrom = try since.map { try TimeExpression.millis($0, now: now) }
            filter.createdBefore = try until.map { try TimeExpression.millis($0, now: now) }
        } catch {
            throw ValidationError("\(error)")
        }
        return filter
    }

    /// The log opened for reading. A missing or unreadable log is not a usage mistake: the message alone, exit 1.
    func openReader() throws -> SQLiteLogReader { try Self.openReader(path: db) }

    static func openReader(path: String) throws -> SQLiteLogReader {
        do {
            return try SQLiteLogReader(path: path)
        } catch {
            Console.error("flywheel: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
    }
}
