import Foundation

/// Times as operators write them: ISO 8601 (`2026-11-30`, `2026-11-30T12:00:00Z`) or an age (`90m`, `24h`, `7d`
/// ago), and ranges `SINCE` or `SINCE..UNTIL`. Shared by the CLI's filters and the daemon's drift watch.
public enum TimeExpression {
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// Unix milliseconds of an ISO 8601 date or date-time, or of `now` minus minutes, hours or days.
    public static func millis(_ text: String, now: Date) throws -> Int64 {
        if let unit = text.last, let amount = Double(text.dropLast()), amount >= 0, amount < 1e7 {
            let seconds: Double? = switch unit {
            case "m": amount * 60
            case "h": amount * 3_600
            case "d": amount * 86_400
            default: nil
            }
            if let seconds { return Int64((now.timeIntervalSince1970 - seconds) * 1000) }
        }
        if let date = ISO8601DateFormatter().date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        if let date = day.date(from: text) { return Int64(date.timeIntervalSince1970 * 1000) }
        throw Problem(description: "'\(text)' is not a time: use ISO 8601 (2026-11-30 or 2026-11-30T12:00:00Z) or 90m, 24h, 7d")
    }

    /// `SINCE` or `SINCE..UNTIL` as unix milliseconds (`until` nil: up to now).
    public static func range(_ text: String, now: Date) throws -> (since: Int64, until: Int64?) {
        let parts = text.components(separatedBy: "..")
        guard parts.count <= 2, let first = parts.first, !first.isEmpty else {
            throw Problem(description: "a range is SINCE or SINCE..UNTIL, got '\(text)'")
        }
        let since = try millis(first, now: now)
        let until = try parts.count == 2 && !parts[1].isEmpty ? millis(parts[1], now: now) : nil
        if let until, until <= since { throw Problem(description: "the range '\(text)' ends before it starts") }
        return (since, until)
    }
}
