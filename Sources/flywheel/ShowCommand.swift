import ArgumentParser
import FlywheelInspect
import FlywheelStore

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print one logged request in full, with its feedback.")

    @Argument(help: "The request id (the x-request-id response header).")
    var id: String

    @Option(name: .long, help: "SQLite log file.")
    var db: String = "flywheel.db"

    @Flag(name: .long, help: "Print the record as one JSON object.")
    var json = false

    func run() throws {
        let reader = try LogSelection.openReader(path: db)
        guard let record = try reader.request(id: id) else {
            Console.error("flywheel: no request with id '\(TerminalText.visible(id))' in \(TerminalText.visible(db))")
            throw ExitCode(1)
        }
        let feedback = try reader.feedback(forRequest: id)
        if json {
            Console.line(RecordFormatter.jsonLine(record, feedback: feedback))
        } else {
            Console.line(RecordFormatter.detail(record, feedback: feedback))
        }
    }
}
