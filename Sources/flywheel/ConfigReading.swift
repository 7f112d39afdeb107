import ArgumentParser
import FlywheelConfig

/// The configuration file as the log-reading commands use it (prices, policies, thresholds, weights): its secrets
/// are not needed. A file that cannot be used is reported and exits 78, as `serve` does.
enum ConfigReading {
    static func load(_ path: String) throws -> GatewayConfiguration {
        do {
            return try GatewayConfiguration.load(path: path, readOnly: true)
        } catch {
            Console.error("flywheel: error: \(error)")
            throw ExitCode(78)
        }
    }
}
