import ArgumentParser
import Foundation
import FlywheelGateway
import FlywheelInspect
import FlywheelJSON
import FlywheelStore

struct KeysCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list and revoke virtual API keys (stored in the log as salted hashes).",
        discussion: """
            A key looks like fw_<id>_<secret>; the log keeps only its id, a salt and SHA-256(salt || secret), so \
            the key is shown once, at creation. The running daemon picks up a new or revoked key within a second, \
            without a restart. Creating the first key of a daemon that runs open (no keys at all) turns auth on.
            """,
        subcommands: [KeysCreateCommand.self, KeysListCommand.self, KeysRevokeCommand.self])
}

/// The key store of `db`: a Flywheel log, created when missing (so a key can exist before the daemon's first
/// start); another SQLite file is never written to.
private func openKeys(_ db: String, create: Bool = false) throws -> SQLiteAPIKeyStore {
    guard create || FileManager.default.fileExists(atPath: db) else {
        throw ValidationError("no log at \(db): give the daemon's --db")
    }
    if FileManager.default.fileExists(atPath: db) {
        do {
            _ = try SQLiteLogReader(path: db)
        } catch StoreError.schemaTooOld {
            // An older log: opening it read-write below migrates it, as the daemon would.
        } catch {
            Console.error("flywheel: \(db) is not a Flywheel log this version can use: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
    }
    do {
        return try SQLiteAPIKeyStore(path: db)
    } catch {
        Console.error("flywheel: cannot open \(db): \(TerminalText.visible("\(error)"))")
        throw ExitCode(1)
    }
}

private func cliSource() -> String {
    let env = ProcessInfo.processInfo.environment
    return "cli:\(env["USER"] ?? env["LOGNAME"] ?? "unknown")@\(ProcessInfo.processInfo.hostName)"
}

private func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

private func isoTime(_ millis: Int64) -> String {
    let f = ISO8601DateFormatter()
    return f.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
}

/// `--expires`: an ISO 8601 date or date-time, or a duration from now (90m, 24h, 30d); in the future.
enum ExpiryParser {
    static func millis(_ text: String, now: Date) throws -> Int64 {
        let shown = TerminalText.visible(String(text.prefix(64)))
        let help = "use an ISO 8601 date or time (2027-01-31, 2027-01-31T12:00:00Z) or a duration from now (90m, 24h, 30d)"
        var result: Int64?
        if text.utf8.count <= 64 {
            if let unit = text.last, let amount = Double(text.dropLast()), amount > 0, amount < 1e6, amount.isFinite {
                let seconds: Double? = switch unit {
                case "m": amount * 60
                case "h": amount * 3_600
                case "d": amount * 86_400
                default: nil
                }
                if let seconds { result = Int64((now.timeIntervalSince1970 + seconds) * 1000) }
            }
            if result == nil, let date = ISO8601DateFormatter().date(from: text) { result = Int64(date.timeIntervalSince1970 * 1000) }
            if result == nil {
                let day = ISO8601DateFormatter()
                day.formatOptions = [.withFullDate]
                if let date = day.date(from: text) { result = Int64(date.timeIntervalSince1970 * 1000) }
            }
        }
        guard let result else { throw ValidationError("--expires: '\(shown)' is not a time: \(help)") }
        guard result > Int64(now.timeIntervalSince1970 * 1000) else {
            throw ValidationError("--expires: '\(shown)' is in the past; a key must expire in the future")
        }
        return result
    }
}

struct KeysCreateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create",
        abstract: "Create a key and print it (the only time it is shown).")

    @Option(name: .long, help: "A name for the key (who or what uses it); unique among keys not revoked.")
    var name: String

    @Option(name: .long, help: "Models the key may use, comma-separated; globs as in routes (gpt-4o*, my-*). Default: any.")
    var models: String?

    @Option(name: .long, help: "Requests per minute (sliding minute).")
    var rpm: Int?

    @Option(name: .long, help: "Tokens per minute: tokens of the key's answered requests in the last minute.")
    var tpm: Int?

    @Option(name: .customLong("budget-usd"), help: "Spend limit in USD over the key's life, priced by the daemon's price table.")
    var budgetUSD: Double?

    @Option(name: .long, help: "When the key stops working: 2027-01-31, 2027-01-31T12:00:00Z, or 90m, 24h, 30d from now.")
    var expires: String?

    @Flag(name: .long, help: "Print one JSON object (with the key) instead of text.")
    var json = false

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    func validate() throws {
        guard !name.isEmpty, name.utf8.count <= 200 else { throw ValidationError("--name must be 1 to 200 bytes") }
        if let rpm, !(1...10_000_000).contains(rpm) { throw ValidationError("--rpm must be 1...10000000") }
        if let tpm, !(1...1_000_000_000).contains(tpm) { throw ValidationError("--tpm must be 1...1000000000") }
        if let budgetUSD, !(budgetUSD > 0 && budgetUSD.isFinite && budgetUSD < 1e12) { throw ValidationError("--budget-usd must be a positive amount") }
        if let list = modelList {
            guard !list.isEmpty, list.count <= 100, list.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 256 }) else {
                throw ValidationError("--models: give 1 to 100 comma-separated model names or globs of at most 256 bytes each")
            }
        }
    }

    var modelList: [String]? {
        models.map { $0.split(separator: ",", omittingEmptySubsequences: false).map { String($0).trimmingCharacters(in: .whitespaces) } }
    }

    func run() throws {
        let expiresAt = try expires.map { try ExpiryParser.millis($0, now: Date()) }
        let store = try openKeys(db, create: true)
        guard let issued = VirtualKeyCredential.issue() else {
            Console.error("flywheel: the system's random source failed; no key was created")
            throw ExitCode(1)
        }
        let key = StoredAPIKey(id: issued.id, name: name, saltHex: issued.saltHex, hashHex: issued.hashHex, models: modelList,
                               requestsPerMinute: rpm, tokensPerMinute: tpm, budgetUSD: budgetUSD, expiresAtMillis: expiresAt,
                               createdAtMillis: nowMillis())
        do {
            try store.create(key, source: cliSource())
        } catch let error as APIKeyStoreError {
            throw ValidationError("--name '\(TerminalText.visible(name))': \(error)")
        } catch {
            Console.error("flywheel: cannot store the key: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
        if json {
            var o = KeysListCommand.json(key, usage: nil)
            o["key"] = .string(issued.key)
            Console.line(TerminalText.jsonSafe(JSON.object(o).serializedString()))
        } else {
            Console.error("flywheel: created key \(issued.id) '\(TerminalText.visible(name))'. It is shown only now; store it somewhere safe:")
            Console.line(issued.key)
        }
    }
}

struct KeysListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List keys with their limits, use and spend (never the keys).")

    @Flag(name: .long, help: "One JSON object per key.")
    var json = false

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    static func json(_ k: StoredAPIKey, usage: APIKeyUsage?) -> JSONObject {
        var o = JSONObject()
        o["id"] = .string(k.id)
        o["name"] = .string(k.name)
        let models: JSON = k.models.map { list in JSON.array(list.map { JSON.string($0) }) } ?? JSON.null
        o["models"] = models
        o["rpm"] = k.requestsPerMinute.map { JSON.int(Int64($0)) } ?? JSON.null
        o["tpm"] = k.tokensPerMinute.map { JSON.int(Int64($0)) } ?? JSON.null
        o["budget_usd"] = k.budgetUSD.map { JSON.double($0) } ?? JSON.null
        o["expires_at"] = k.expiresAtMillis.map { JSON.string(isoTime($0)) } ?? JSON.null
        o["created_at"] = .string(isoTime(k.createdAtMillis))
        o["revoked_at"] = k.revokedAtMillis.map { JSON.string(isoTime($0)) } ?? JSON.null
        if let usage {
            o["requests"] = .int(Int64(usage.requests))
            o["total_tokens"] = .int(Int64(usage.totalTokens))
            o["spent_usd"] = .double(usage.costUSD)
        }
        return o
    }

    func run() throws {
        let store = try openKeys(db)
        let keys: [StoredAPIKey]
        let usage: [String: APIKeyUsage]
        do {
            keys = try store.all()
            usage = try store.usage()
        } catch {
            Console.error("flywheel: cannot read the keys: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
        let now = nowMillis()
        if json {
            for k in keys {
                let u = usage[k.id] ?? APIKeyUsage(requests: 0, totalTokens: 0, costUSD: 0)
                Console.line(TerminalText.jsonSafe(JSON.object(Self.json(k, usage: u)).serializedString()))
            }
            return
        }
        guard !keys.isEmpty else { return Console.error("flywheel: no virtual keys in \(db) (flywheel keys create --name NAME)") }
        let header = ["id", "name", "status", "models", "rpm", "tpm", "budget $", "spent $", "requests", "expires"]
        let rows = keys.map { k -> [String] in
            let u = usage[k.id]
            let status = k.revokedAtMillis != nil ? "revoked" : (k.expiresAtMillis.map { $0 <= now } == true ? "expired" : "active")
            return [k.id, TerminalText.visible(String(k.name.prefix(40))), status,
                    TerminalText.visible(String((k.models?.joined(separator: ",") ?? "*").prefix(40))),
                    k.requestsPerMinute.map(String.init) ?? "-", k.tokensPerMinute.map(String.init) ?? "-",
                    k.budgetUSD.map { String(format: "%.2f", $0) } ?? "-", String(format: "%.4f", u?.costUSD ?? 0),
                    "\(u?.requests ?? 0)", k.expiresAtMillis.map(isoTime) ?? "-"]
        }
        var widths = header.map(\.count)
        for row in rows { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        for line in [header] + rows {
            Console.line(line.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}

struct KeysRevokeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revoke",
        abstract: "Revoke a key: the running daemon refuses it within a second (401).")

    @Argument(help: "The key's id (as `keys list` shows it), or the whole key.")
    var id: String

    @Option(name: .long, help: "SQLite log file (the daemon's).")
    var db: String = "flywheel.db"

    func run() throws {
        // A whole key is reduced to its id at once: the secret is never printed back.
        let keyID = VirtualKeyCredential.parse(id)?.id ?? id
        guard keyID.utf8.count <= 64 else { throw ValidationError("'\(TerminalText.visible(String(keyID.prefix(64))))…' is not a key id") }
        let store = try openKeys(db)
        do {
            let key = try store.revoke(id: keyID, atMillis: nowMillis(), source: cliSource())
            Console.error("flywheel: revoked key \(key.id) '\(TerminalText.visible(key.name))'; a running daemon refuses it within a second")
        } catch let error as APIKeyStoreError {
            Console.error("flywheel: \(TerminalText.visible(error.description))")
            throw ExitCode(1)
        } catch {
            Console.error("flywheel: cannot revoke: \(TerminalText.visible("\(error)"))")
            throw ExitCode(1)
        }
    }
}
