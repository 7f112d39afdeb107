import Foundation

/// Finds stop strings in streamed text without ever emitting part of one.
///
/// Text arrives in pieces (one decoded token at a time). `append` returns what is safe to send:
/// everything except a tail that could still grow into a stop string. When a stop string
/// completes, the text before it is returned and the matcher reports `stopped`; the stop
/// string itself is never part of the output (OpenAI's behaviour).
public struct StopSequenceMatcher: Sendable {
    public let stops: [String]
    private var pending = ""
    public private(set) var stopped = false
    private let longest: Int

    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
        self.longest = self.stops.map(\.unicodeScalars.count).max() ?? 0
    }

    /// Feeds `text`; returns the newly safe output and whether a stop string was found.
    public mutating func append(_ text: String) -> (output: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        guard longest > 0 else { return (text, false) }
        pending += text
        // Earliest complete stop string wins.
        var earliest: String.Index?
        for stop in stops {
            if let r = pending.range(of: stop), earliest.map({ r.lowerBound < $0 }) ?? true { earliest = r.lowerBound }
        }
        if let cut = earliest {
            stopped = true
            let out = String(pending[..<cut])
            pending = ""
            return (out, true)
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        let scalars = Array(pending.unicodeScalars)
        var hold = 0
        for length in stride(from: min(longest - 1, scalars.count), to: 0, by: -1) {
            let suffix = String(String.UnicodeScalarView(scalars[(scalars.count - length)...]))
            if stops.contains(where: { $0.hasPrefix(suffix) }) { hold = length; break }
        }
        let emit = String(String.UnicodeScalarView(scalars[..<(scalars.count - hold)]))
        pending = String(String.UnicodeScalarView(scalars[(scalars.count - hold)...]))
        return (emit, false)
    }

    /// Releases text still held back (the generation ended without completing a stop string).
    public mutating func finish() -> String {
        defer { pending = "" }
        return stopped ? "" : pending
    }
}
