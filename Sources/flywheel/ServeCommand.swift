import FlywheelConfig
import ArgumentParser
import Foundation
import CLinux
import FlywheelDaemon

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the gateway daemon.",
        discussion: "Flags override the config file, so the daemon also runs with no config file at all.")

    @Option(name: .long, help: "YAML configuration file (see config/flywheel.example.yaml).")
    var config: String?

    @Option(name: .long, help: "Address to listen on, HOST:PORT (port 0 picks a free one). Default 127.0.0.1:8080.")
    var listen: String?

    @Option(name: .long, help: "SQLite log file. Default flywheel.db.")
    var db: String?

    @Option(name: .long, help: "Send every model to this OpenAI-compatible base URL (e.g. https://api.openai.com/v1).")
    var upstreamURL: String?

    @Option(name: .long, help: "Environment variable holding the --upstream-url key. Default OPENAI_API_KEY.")
    var upstreamKeyEnv: String = "OPENAI_API_KEY"

    @Option(name: .customLong("local-model"), help: ArgumentHelp(
        "Serve a GGUF model in process: NAME=PATH.gguf (repeatable). Requests with model NAME go to it (route 'local').",
        valueName: "NAME=PATH"))
    var localModels: [String] = []

    @Option(name: .long, help: "Compute threads for local models. Default: the cores available.")
    var threads: Int?

    @Flag(name: .long, help: "Listen on a non-loopback address even when no API key exists (as auth.allow_open: true).")
    var allowOpen = false

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        var settings: GatewayConfiguration
        do {
            settings = try config.map { try GatewayConfiguration.load(path: $0, environment: environment) } ?? GatewayConfiguration()
        } catch {
            Console.error("flywheel: error: \(error)")
            throw ExitCode(StartupExit.configuration)
        }
        let locals: [GatewayConfiguration.LocalModelSettings]
        do {
            locals = try localModels.map(GatewayConfiguration.LocalModelSettings.init(flag:))
        } catch {
            throw ValidationError("\(error)")
        }
        settings.applyOverrides(listen: listen, database: db, upstreamURL: upstreamURL,
                                upstreamKey: environment[upstreamKeyEnv], localModels: locals, threads: threads)
        if allowOpen { settings.auth.allowOpen = true }
        if settings.routes.isEmpty && settings.localModels.isEmpty {
            throw ValidationError("Nothing to route to: pass --upstream-url URL or --local-model NAME=PATH, or give routes or local_models in --config.")
        }
        // Block the termination signals before any thread exists, so only our waiter ever receives them.
        TerminationSignals.block()
        // Keep freed memory in glibc's per-thread arenas instead of returning it to the kernel after every
        // burst: without this, each request's allocations grow and shrink a heap with mprotect calls.
        fw_tune_malloc(64 << 20, 16 << 20)
        let server: Daemon
        do {
            server = try Daemon(configuration: settings)
        } catch {
            // A bad config value or model file is not a usage mistake: the message alone, no usage text.
            Console.error("flywheel: error: \(error)")
            throw ExitCode(StartupExit.configuration)
        }
        let url: String
        do {
            url = try server.start()
        } catch {
            Console.error("flywheel: error: cannot start listening on \(settings.server.listen): \(error)")
            throw ExitCode(StartupExit.unavailable)
        }
        Console.error("flywheel: listening on \(url)")
        Console.error("flywheel: \(server.authSummary)")
        let config = self.config
        server.setReloader { [weak server] in
            guard let server else { return [] }
            return try server.reload(Self.settings(config: config, environment: environment, locals: locals))
        }
        for model in server.localModels {
            Console.error("flywheel: local model '\(model.name)' from \(model.path): \(model.summary)")
            if let problem = model.chatTemplateProblem {
                Console.error("flywheel: warning: \(problem); chat requests for '\(model.name)' will be refused")
            }
        }
        for policy in settings.policies where server.localModels.contains(where: { $0.name == policy.model }) {
            Console.error("flywheel: warning: the traffic policy for '\(policy.model)' takes every request for that name; the local model '\(policy.model)' answers only as one of its targets")
        }
        Console.error("flywheel: logging to \(settings.log.path); routes: \((server.localModels.map(\.name) + settings.routes.map(\.model)).joined(separator: ", "))")
        var signal = TerminationSignals.wait()
        while signal == SIGHUP {
            reload(server, environment: environment, locals: locals)
            signal = TerminationSignals.wait()
        }
        Console.error("flywheel: received \(signal == SIGINT ? "SIGINT" : "SIGTERM"), draining (up to \(settings.server.shutdownGrace) s)")
        TerminationSignals.unblock()
        server.shutdown()
        Console.error("flywheel: stopped")
    }

    /// SIGHUP: reads the configuration again and serves its `local_models` (plus the `--local-model` flags) and
    /// its `policies` without a restart. Anything else in the file takes effect at the next start. A failure
    /// changes nothing.
    private func reload(_ server: Daemon, environment: [String: String], locals: [GatewayConfiguration.LocalModelSettings]) {
        do {
            let settings = try Self.settings(config: config, environment: environment, locals: locals)
            for line in try server.reload(settings) { Console.error("flywheel: reloaded \(line)") }
        } catch {
            Console.error("flywheel: reload failed, still serving the previous local models and policies: \(error)")
        }
    }
}

extension ServeCommand {
    /// The configuration as a reload reads it: the file again, with the `--local-model` flags.
    static func settings(config: String?, environment: [String: String],
                         locals: [GatewayConfiguration.LocalModelSettings]) throws -> GatewayConfiguration {
        var settings = try config.map { try GatewayConfiguration.load(path: $0, environment: environment) } ?? GatewayConfiguration()
        settings.applyOverrides(listen: nil, database: nil, upstreamURL: nil, upstreamKey: nil, localModels: locals, threads: nil)
        return settings
    }
}

/// Exit codes of `flywheel serve` when it cannot start (sysexits.h values; documented in the README).
enum StartupExit {
    /// Bad flags (ArgumentParser's usage errors also exit 64).
    static let usage: Int32 = 64
    /// The configuration, a model file or the log database is unusable (EX_CONFIG).
    static let configuration: Int32 = 78
    /// The listener could not be opened, e.g. the port is taken (EX_UNAVAILABLE).
    static let unavailable: Int32 = 69
}
