import FlywheelConfig
import ArgumentParser
import Foundation
import CLinux
import FlywheelDaemon
import FlywheelOutput

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

    @Option(name: .long, help: "The daemon's output: debug, info, warn or error and up (overrides server.log_level).")
    var logLevel: String?

    @Option(name: .long, help: "The daemon's output as text (time level message key=value) or json, one object per line (overrides server.log_format).")
    var logFormat: String?

    func run() throws {
        // Block the termination signals before any thread exists (the output's writer is the first), so only our
        // waiter ever receives them.
        TerminationSignals.block()
        let output = DaemonOutput.standardError
        if let logFormat, let format = LogFormat(rawValue: logFormat) { output.configure(level: output.level, format: format) }
        /// Says `message` as an error, waits for it to be written, and exits with `code`.
        func fail(_ message: String, _ code: Int32) -> ExitCode {
            output.error(message)
            output.flush()
            return ExitCode(code)
        }
        for (flag, value, names) in [("--log-level", logLevel, GatewayConfiguration.logLevelNames),
                                     ("--log-format", logFormat, GatewayConfiguration.logFormatNames)] {
            if let value, !names.contains(value) {
                throw ValidationError("\(flag) must be one of \(names.joined(separator: ", ")), got '\(value)'")
            }
        }
        let locals: [GatewayConfiguration.LocalModelSettings]
        do {
            locals = try localModels.map(GatewayConfiguration.LocalModelSettings.init(flag:))
        } catch {
            throw ValidationError("\(error)")
        }
        let settings: GatewayConfiguration
        do {
            settings = try readSettings(locals: locals)
        } catch let error as ConfigurationError {
            throw fail("\(error)", StartupExit.configuration)
        } catch {
            throw error
        }
        if settings.routes.isEmpty && settings.localModels.isEmpty {
            throw ValidationError(Self.nothingToRoute)
        }
        // Keep freed memory in glibc's per-thread arenas instead of returning it to the kernel after every
        // burst: without this, each request's allocations grow and shrink a heap with mprotect calls.
        fw_tune_malloc(64 << 20, 16 << 20)
        let server: Daemon
        let source: @Sendable () throws -> GatewayConfiguration = { [self] in
            let next = try readSettings(locals: locals)
            if next.routes.isEmpty && next.localModels.isEmpty { throw ConfigurationError(Self.nothingToRoute) }
            return next
        }
        do {
            server = try Daemon(configuration: settings, output: output, source: source)
        } catch {
            // A bad config value or model file is not a usage mistake: the message alone, no usage text.
            throw fail("\(error)", StartupExit.configuration)
        }
        let url: String
        do {
            url = try server.start()
        } catch {
            throw fail("cannot start listening on \(settings.server.listen): \(error)", StartupExit.unavailable)
        }
        output.info("listening on \(url)")
        if server.authSummary.hasPrefix("warning: ") {
            output.warn(String(server.authSummary.dropFirst("warning: ".count)))
        } else {
            output.info(server.authSummary)
        }
        if let certificate = server.tlsCertificateSummary { output.info("tls certificate: \(certificate)") }
        if let inference = server.localInferenceSummary { output.info("local inference: \(inference)") }
        for model in server.localModels {
            output.info("local model '\(model.name)' from \(model.path): \(model.summary)")
            if let problem = model.chatTemplateProblem {
                output.warn("\(problem); chat requests for '\(model.name)' will be refused")
            }
        }
        for policy in settings.policies where server.localModels.contains(where: { $0.name == policy.model }) {
            output.warn("the traffic policy for '\(policy.model)' takes every request for that name; the local model '\(policy.model)' answers only as one of its targets")
        }
        output.info("logging to \(settings.log.path); routes: \((server.localModels.map(\.name) + settings.routes.map(\.model)).joined(separator: ", "))")
        var signal = TerminationSignals.wait()
        while signal == SIGHUP {
            _ = server.reload()
            signal = TerminationSignals.wait()
        }
        output.info("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"), draining (up to \(server.configuration.server.shutdownGrace) s)")
        TerminationSignals.unblock()
        server.shutdown()
        output.info("stopped")
        output.flush()
    }

    static let nothingToRoute = "Nothing to route to: pass --upstream-url URL or --local-model NAME=PATH, or give routes or local_models in --config."

    /// The configuration file (if any) with the flags on top: at start, and again for every reload.
    private func readSettings(locals: [GatewayConfiguration.LocalModelSettings]) throws -> GatewayConfiguration {
        let environment = ProcessInfo.processInfo.environment
        var settings = try config.map { try GatewayConfiguration.load(path: $0, environment: environment) } ?? GatewayConfiguration()
        settings.applyOverrides(listen: listen, database: db, upstreamURL: upstreamURL,
                                upstreamKey: environment[upstreamKeyEnv], localModels: locals, threads: threads)
        if let logLevel { settings.server.logLevel = logLevel }
        if let logFormat { settings.server.logFormat = logFormat }
        if allowOpen { settings.auth.allowOpen = true }
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
