import ArgumentParser
import Foundation
import FlywheelInspect
import FlywheelJSON
import FlywheelLoop
import FlywheelStore

/// Who made a change, for the record: `cli:<user>@<host>`.
private func cliSource() -> String {
    let env = ProcessInfo.processInfo.environment
    let user = env["USER"] ?? env["LOGNAME"] ?? "unknown"
    return "cli:\(user)@\(ProcessInfo.processInfo.hostName)"
}

private func openChanges(_ db: String) throws -> SQLitePolicyChangeStore {
    guard FileManager.default.fileExists(atPath: db) else {
        throw ValidationError("no log at \(db): give the daemon's --db")
    }
    // Only a Flywheel log, as the daemon left it: another SQLite file is never written to.
    do {
        _ = try SQLiteLogReader(path: db)
    } catch {
        Console.error("flywheel: \(db) is not a Flywheel log this version can use: \(error)")
        throw ExitCode(1)
    }
    do {
        return try SQLitePolicyChangeStore(path: db)
    } catch {
        Console.error("flywheel: cannot open \(db): \(error)")
        throw ExitCode(1)
    }
}

/// The split in force for `model`, from the change log the daemon keeps, and the recent changes it was read from
/// (newest first).
private func current(_ store: SQLitePolicyChangeStore, _ model: String)
    throws -> (change: PolicyChange, variants: [PolicySplit.Variant], recent: [PolicyChange]) {
    let recent = try store.changes(model: model, limit: 200)
    guard !recent.isEmpty else {
        throw ValidationError("no traffic policy for '\(TerminalText.visible(String(model.prefix(200))))' in the log: the daemon records each configured policy when it starts")
    }
    // The newest change that can be read (a damaged row is skipped, as the daemon skips it).
    guard let (change, variants) = recent.lazy.compactMap({ c in PolicySplit.decode(c.variantsJSON).map { (c, $0) } }).first else {
        throw ValidationError("none of the recent changes of '\(TerminalText.visible(model))' can be read; restart the daemon to record its configured split")
    }
    return (change, variants, recent)
}

struct PromoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Change a traffic policy's split: give a target a share of the traffic, live.",
        discussion: """
            Sets TARGET's weight to --weight percent of MODEL's traffic; the other variants share the rest in \
            proportion. The running daemon applies it within a second, without a restart. Raising a target's share \
            needs a passing `flywheel eval` of that target on record (the latest run for it), unless --force. The \
            change is recorded with its time, source, reason and the evaluation it relied on (`flywheel promotions`).
            """)

    @Argument(help: "The policy's model name (what apps send).")
    var model: String

    @Option(name: .long, help: "The target (variant) to set.")
    var route: String

    @Option(name: .long, help: "Its share of the traffic, in percent (0...100).")
    var weight: Double

    @Option(name: .long, help: "Why (recorded with the change).")
    var reason: String?

    @Flag(name: .long, help: "Promote even without a passing evaluation of the target.")
    var force = false

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    func run() throws {
        let store = try openChanges(db)
        try store.transaction { try promote(store) }
    }

    private func promote(_ store: SQLitePolicyChangeStore) throws {
        let (change, variants, _) = try current(store, model)
        let inForce = PolicySplit.normalized(variants)
        let next: [PolicySplit.Variant]
        do {
            next = try PolicySplit.setting(route, to: weight, in: inForce)
        } catch {
            throw ValidationError("\(error)")
        }
        let before = inForce.first { $0.target == route }?.weight ?? 0
        guard next != inForce else {
            Console.line("\(TerminalText.visible(model)): already \(PolicySplit.describe(next)); nothing recorded.")
            return
        }
        var evalRun: String?
        if weight > before {
            let evals = try SQLiteEvalStore(path: db)
            let latest = try evals.latestRuns(candidate: route, limit: 1).first
            evalRun = latest?.id
            let problem: String? = switch latest?.status {
            case nil: "no evaluation of '\(route)' is on record; run `flywheel eval --candidate \(route) ...` first"
            case "passed"?: nil
            case "completed"?: "the latest evaluation of '\(route)' (\(latest!.id)) ran no gate (give --min-pass-rate, --min-win-rate or --max-regression)"
            case let status?: "the latest evaluation of '\(route)' (\(latest!.id)) is \(status)"
                + (status == "failed" ? ": it failed its gate" : "")
            }
            if let problem {
                guard force else {
                    Console.error("flywheel: promote refused: \(problem). --force promotes anyway (recorded as forced).")
                    throw ExitCode(1)
                }
                Console.error("flywheel: warning: \(problem); promoting because of --force")
            }
        }
        let recorded = try store.record(PolicyChange(model: model, variantsJSON: PolicySplit.encode(next), previousJSON: change.variantsJSON,
                                                     action: "promote", reason: reason, source: cliSource(), evalRun: evalRun,
                                                     forced: force))
        Console.line("\(TerminalText.visible(model)): \(PolicySplit.describe(next)) (was \(PolicySplit.describe(variants))); change \(recorded.id)"
                     + (evalRun.map { ", relying on \($0)" } ?? "") + ". The running daemon applies it within a second.")
    }
}

struct RollbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Restore a traffic policy's split from before its latest promotion or rollout step.")

    @Argument(help: "The policy's model name.")
    var model: String

    @Option(name: .long, help: "Why (recorded with the change).")
    var reason: String?

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    func run() throws {
        let store = try openChanges(db)
        try store.transaction { try rollback(store) }
    }

    private func rollback(_ store: SQLitePolicyChangeStore) throws {
        let (_, variants, recent) = try current(store, model)
        guard let undone = recent.first(where: { ["promote", "rollout_step", "rollout_rollback", "config"].contains($0.action) }),
              undone.action != "config", let previous = undone.previousJSON.flatMap(PolicySplit.decode) else {
            throw ValidationError("'\(model)' has no promotion or rollout step since its configured split to roll back")
        }
        if undone.action == "rollout_rollback" {
            Console.error("flywheel: rollback refused: the rollout's guardrails already took the split back (change \(undone.id): \(TerminalText.visible(undone.reason ?? ""))). Promote explicitly to change it.")
            throw ExitCode(1)
        }
        if PolicySplit.normalized(previous) == PolicySplit.normalized(variants) {
            Console.error("flywheel: nothing to roll back: change \(undone.id) is already undone (the split in force is its previous one)")
            throw ExitCode(1)
        }
        let recorded = try store.record(PolicyChange(model: model, variantsJSON: PolicySplit.encode(previous), previousJSON: PolicySplit.encode(variants),
                                                     action: "rollback", reason: reason ?? "rolled back change \(undone.id)",
                                                     source: cliSource()))
        Console.line("\(TerminalText.visible(model)): \(PolicySplit.describe(previous)) (was \(PolicySplit.describe(variants))); change \(recorded.id) undoes \(undone.id). The running daemon applies it within a second.")
    }
}

struct PromotionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promotions",
        abstract: "List the changes of the traffic policies' splits: when, what, from where, why, on which evaluation.")

    @Argument(help: "Only this policy's changes.")
    var model: String?

    @Option(name: [.customShort("n"), .long], help: "How many, newest first.")
    var limit: Int = 50

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    @Flag(name: .long, help: "One JSON object per line.")
    var json = false

    func run() throws {
        let store = try openChanges(db)
        let changes = try store.changes(model: model, limit: max(1, limit))
        for c in changes {
            let variants = PolicySplit.decode(c.variantsJSON) ?? []
            if json {
                var o = JSONObject()
                o["id"] = .int(c.id)
                o["created_at"] = .string(RecordFormatter.isoTimestamp(millis: c.createdAtMillis))
                o["model"] = .string(c.model)
                o["action"] = .string(c.action)
                o["variants"] = (try? JSONParser.parse(c.variantsJSON)) ?? .null
                o["previous"] = c.previousJSON.flatMap { try? JSONParser.parse($0) } ?? .null
                o["reason"] = .optional(c.reason)
                o["source"] = .string(c.source)
                o["eval_run"] = .optional(c.evalRun)
                o["forced"] = .bool(c.forced)
                Console.line(JSON.object(o).serializedString())
            } else {
                let line = "\(c.id)  \(RecordFormatter.isoTimestamp(millis: c.createdAtMillis))  \(c.model)  \(c.action)  "
                    + PolicySplit.describe(variants) + "  by \(c.source)"
                    + (c.evalRun.map { "  eval \($0)" } ?? "") + (c.forced ? "  FORCED" : "") + (c.reason.map { "  (\($0))" } ?? "")
                Console.line(TerminalText.visible(line))
            }
        }
        if changes.isEmpty && !json { Console.error("flywheel: no policy changes\(model.map { " for \($0)" } ?? "") in \(db)") }
    }
}
