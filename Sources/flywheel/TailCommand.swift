import ArgumentParser
import FlywheelInspect
import FlywheelStore
import Synchronization
import Foundation

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print the newest logged requests; with --follow, keep printing new ones as they land.")

    @Option(name: .long, help: "SQLite log file.")
    var db: String = "flywheel.db"

    @Option(name: [.customShort("n"), .long], help: "How many of the newest rows to print first.")
    var lines: Int = 20

    @Flag(name: [.customShort("f"), .long], help: "Keep printing new rows until interrupted.")
    var follow = false

    @Flag(name: .long, help: "One JSON object per line with the whole record (request, response, feedback).")
    var json = false

    @Option(name: .long, help: "Only requests for this model (requested or served).")
    var model: String?

    @Option(name: .long, help: "Only requests handled by this route.")
    var route: String?

    @Option(name: .long, help: "Only requests carrying this tag (x-flywheel-tags).")
    var tag: String?

    @Option(name: .long, help: "Only requests answered with this HTTP status.")
    var status: Int?

    @Option(name: .long, help: "Only the requests of this episode (x-flywheel-episode or metadata.episode_id).")
    var episode: String?

    @Flag(name: .long, help: "Only failed requests.")
    var errors = false

    @Flag(name: .long, help: "Also print feedback rows.")
    var feedback = false

    func validate() throws {
        guard lines >= 0 else { throw ValidationError("--lines must be >= 0") }
    }

    func run() throws {
        TerminationSignals.block()
        let stop = StopFlag()
        if follow {
            let waiter = Thread { _ = TerminationSignals.wait(); stop.set() }
            waiter.start()
        }
        let reader: SQLiteLogReader
        do {
            reader = try SQLiteLogReader(path: db)
        } catch {
            // A missing or unreadable log is not a usage mistake: the message alone, exit 1.
            Console.error("flywheel: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
        var options = LogTailer.Options()
        options.count = lines
        options.follow = follow
        options.json = json
        options.includeFeedback = feedback
        options.filter = RequestFilter(model: model, route: route, tag: tag, status: status, errorsOnly: errors)
        options.filter.episode = episode
        try LogTailer(reader: reader, options: options, output: Console.line).run { stop.isSet }
    }
}

/// Set once by the signal-waiting thread, read by the polling loop.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
