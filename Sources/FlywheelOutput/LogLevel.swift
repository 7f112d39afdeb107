/// How much the daemon says: `debug` < `info` < `warn` < `error`; lines below the level in force are dropped.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug, info, warn, error

    /// `debug`, `info`, `warn` (or `warning`), `error`; nil for anything else.
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warn
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: "debug"
        case .info: "info"
        case .warn: "warn"
        case .error: "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// How a line is written: `text` for people (`TIME LEVEL message key=value ...`), `json` for collectors (one
/// object per line: `time`, `level`, `msg`, then the fields).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}
