import ArgumentParser
import Dispatch
import Foundation
import FlywheelConfig
import FlywheelDaemon
import FlywheelStore
import Synchronization

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Delete the requests older than the configuration's retention (or, with --dry-run, count them).",
        discussion: """
            The daemon prunes by itself every log.prune_interval; this runs one pass now with the same rules: \
            log.retention_days, the routes' and local models' retention_days, and log.retention_days_with_feedback for \
            rows with feedback. A request's feedback goes with it; eval runs and policy history are never touched. \
            Safe while the daemon runs (the pass takes short transactions).
            """)

    @Option(name: .long, help: "The configuration file whose retention rules apply (and whose log.path is the log, unless --db).")
    var config: String

    @Option(name: .long, help: "The log database (default: the configuration's log.path).")
    var db: String?

    @Flag(name: .long, help: "Count what would be deleted; delete nothing.")
    var dryRun = false

    func run() throws {
        let settings = try ConfigReading.load(config)
        let path = db ?? settings.log.path
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        guard let plan = RetentionJob.plan(settings, nowMillis: now) else {
            Console.line("retention is 'forever' for every row in \(config): nothing to prune")
            return
        }
        let result: PruneResult
        if dryRun {
            result = try LogSelection.openReader(path: path).prunable(plan)
        } else {
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no log database at \(path)") }
            let writer = try SQLiteLogWriter(path: path, capacity: 1, maxBatch: 1)
            let done = DispatchSemaphore(value: 0)
            let outcome = Mutex(PruneResult())
            writer.prune(plan, progress: nil) { r in
                outcome.withLock { $0 = r }
                done.signal()
            }
            done.wait()
            writer.close()
            result = outcome.withLock { $0 }
        }
        let verb = dryRun ? "would delete" : "deleted"
        Console.line("\(verb) \(result.requests) requests and \(result.feedback) feedback rows (\(result.examined) rows past the shortest retention examined)")
        if let error = result.error {
            Console.error("flywheel: error: the pass stopped early: \(error)")
            throw ExitCode(1)
        }
    }
}
