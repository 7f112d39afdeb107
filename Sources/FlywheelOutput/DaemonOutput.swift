import Foundation
import Synchronization

/// The daemon's own output: every line it says (start-up, reloads, warnings, background jobs) and, when turned
/// on, one access-log line per request. Lines carry a time, a level and `key=value` fields, in text or JSON
/// (`LogFormat`), with every field escaped (`LogLineEncoding`). Level, format and the access log's destination
/// can change while the daemon runs (a reload). Thread-safe; logging never blocks on I/O (`LineWriter`).
public final class DaemonOutput: Sendable {
    private struct Settings {
        var level: LogLevel
        var format: LogFormat
        /// Where access lines go: nil off, `.output` the daemon's output, `.file` its own file.
        var access: AccessLog?
        var accessPath: String?
    }
    private enum AccessLog {
        case output
        case file(LineWriter)
    }

    private let settings: Mutex<Settings>
    private let writer: LineWriter

    /// The process's standard error: the daemon's output unless told otherwise.
    public static let standardError = DaemonOutput()

    /// Writes to `descriptor` (stderr by default).
    public init(level: LogLevel = .info, format: LogFormat = .text, descriptor: Int32 = 2) {
        settings = Mutex(Settings(level: level, format: format, access: nil, accessPath: nil))
        writer = LineWriter(descriptor: descriptor)
    }

    public var level: LogLevel { settings.withLock { $0.level } }
    public var format: LogFormat { settings.withLock { $0.format } }

    /// Whether a line at `level` would be written (to skip building an expensive one).
    public func enabled(_ level: LogLevel) -> Bool { level >= self.level }

    public func debug(_ message: String, _ fields: [(String, String)] = []) { log(.debug, message, fields) }
    public func info(_ message: String, _ fields: [(String, String)] = []) { log(.info, message, fields) }
    public func warn(_ message: String, _ fields: [(String, String)] = []) { log(.warn, message, fields) }
    public func error(_ message: String, _ fields: [(String, String)] = []) { log(.error, message, fields) }

    public func log(_ level: LogLevel, _ message: String, _ fields: [(String, String)] = []) {
        let (minimum, format) = settings.withLock { ($0.level, $0.format) }
        guard level >= minimum else { return }
        writer.write(Self.render(format, time: Self.timestamp(), level: level, message: message, fields: fields))
    }

    /// Changes level and format from the next line on.
    public func configure(level: LogLevel, format: LogFormat) {
        settings.withLock {
            $0.level = level
            $0.format = format
        }
    }

    /// The access log: nil off, "-" the daemon's output, else a file path (opened for appending; opened again
    /// when called again with the same path, so a rotated file is let go). Throws when the file cannot be
    /// opened; the previous destination then stays.
    public func setAccessLog(_ destination: String?) throws {
        var opened: LineWriter?
        if let path = destination, path != "-" {
            opened = try LineWriter.appending(toFile: path, name: "flywheel-access-log")
        }
        let previous = settings.withLock { s -> AccessLog? in
            let old = s.access
            s.accessPath = destination
            s.access = destination == nil ? nil : opened.map { .file($0) } ?? .output
            return old
        }
        if case .file(let old) = previous { old.close() }
    }

    /// Whether access lines are written at all.
    public var recordsAccess: Bool { settings.withLock { $0.access != nil } }

    /// The access line's fields written as JSON numbers.
    static let accessNumbers: Set<String> = ["status", "bytes", "duration_ms"]

    /// One access-log line (level info, message `request`), to the access log's destination, whatever the level
    /// in force (the access log is turned on and off by itself).
    public func access(_ fields: [(String, String)]) {
        let (access, format) = settings.withLock { ($0.access, $0.format) }
        guard let access else { return }
        let line = Self.render(format, time: Self.timestamp(), level: .info, message: "request", fields: fields,
                               numbers: Self.accessNumbers)
        switch access {
        case .output: writer.write(line)
        case .file(let file): file.write(line)
        }
    }

    /// Lines dropped because the output could not keep up.
    public var droppedCount: Int { writer.droppedCount }

    /// Blocks until everything said so far is written (before the process exits).
    public func flush() {
        writer.flush()
        if case .file(let file) = settings.withLock({ $0.access }) { file.flush() }
    }

    static func render(_ format: LogFormat, time: String, level: LogLevel, message: String, fields: [(String, String)],
                       numbers: Set<String> = []) -> String {
        switch format {
        case .text: LogLineEncoding.text(time: time, level: level, message: message, fields: fields)
        case .json: LogLineEncoding.json(time: time, level: level, message: message, fields: fields, numbers: numbers)
        }
    }

    /// UTC, RFC 3339 with milliseconds: `2026-11-30T23:59:01.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let ms = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(ms)Z"
    }
}
