import ArgumentParser
import FlywheelInspect
import FlywheelStore
import Synchronization
import Foundation

struct TailCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tail",
        abstract: "Print the newest logged requests; with --follow, keep printing new ones as they land.")

    @OptionGroup var log: LogSelection

    @Option(name: [.customShort("n"), .long], help: "How many of the newest rows to print first.")
    var lines: Int = 20

    @Flag(name: [.customShort("f"), .long], help: "Keep printing new rows until interrupted.")
    var follow = false

    @Flag(name: .long, help: "One JSON object per line with the whole record (request, response, feedback).")
    var json = false

    @Option(name: .long, help: "Only requests answered with this HTTP status.")
    var status: Int?

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
        let reader = try log.openReader()
        var options = LogTailer.Options()
        options.count = lines
        options.follow = follow
        options.json = json
        options.includeFeedback = feedback
        options.filter = try log.filter()
        options.filter.status = status
        options.filter.errorsOnly = errors
        try LogTailer(reader: reader, options: options, output: Console.line).run { stop.isSet }
    }
}

/// Set once by the signal-waiting thread, read by the polling loop.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}
