import FlywheelJSON
import FlywheelRedaction
import FlywheelStore
import Synchronization

/// `log.redact: pii`: the export's PII scrubber applied to every request row before it is stored, on the log
/// writer's thread (never on an event loop). The request and response bodies are parsed and every string value
/// scrubbed (a body that is not JSON is scrubbed as text), so a placeholder never breaks the stored JSON and an
/// escaped address (`\u0040`) is found as well; `user`, `metadata` and the error text are scrubbed too.
///
/// Bounded cost: at most `maxScannedBytes` of text per row go through the scrubber; a string that does not
/// fit in what is left of that budget is not stored at all but replaced by `tooLargePlaceholder`, so a huge body costs a parse, never a
/// long scan, and never leaves unscrubbed text behind.
final class LogRedactor: Sendable {
    static let maxScannedBytes = 4 << 20
    static let tooLargePlaceholder = "<REDACTED: too large to scan>"
    /// Values that name the protocol's own things, never a person's data: left as they are.
    private static let structuralKeys: Set<String> = ["model", "role", "type", "object", "finish_reason", "id", "system_fingerprint",
                                                       "encoding_format", "tool_choice", "service_tier"]

    /// The scrubber's compiled patterns, used by the writer thread alone (the lock is never contended).
    private let scrubber = Mutex(PIIScrubber())

    /// Replacements made since start, by kind (`EMAIL`, `PHONE`, ...).
    var counts: [String: Int] { scrubber.withLock { $0.counts } }

    func redact(_ record: inout RequestRecord) {
        guard !record.contentWithheld else { return }
        scrubber.withLock { scrubber in
            var budget = Self.maxScannedBytes
            record.requestJSON = Self.redact(json: record.requestJSON, &scrubber, &budget)
            record.responseJSON = record.responseJSON.map { Self.redact(json: $0, &scrubber, &budget) }
            record.metadataJSON = record.metadataJSON.map { Self.redact(json: $0, &scrubber, &budget) }
            record.errorMessage = record.errorMessage.map { Self.scrub($0, &scrubber, &budget) }
            record.user = record.user.map { Self.scrub($0, &scrubber, &budget) }
        }
    }

    /// JSON text with every string value scrubbed; text that does not parse is scrubbed as a whole.
    static func redact(json text: String, _ scrubber: inout PIIScrubber, _ budget: inout Int) -> String {
        guard !text.isEmpty else { return text }
        guard let value = try? JSONParser.parse(text) else { return scrub(text, &scrubber, &budget) }
        return redact(value, &scrubber, &budget).serializedString()
    }

    static func redact(_ value: JSON, _ scrubber: inout PIIScrubber, _ budget: inout Int) -> JSON {
        switch value {
        case .string(let s):
            return .string(scrub(s, &scrubber, &budget))
        case .array(let items):
            var out: [JSON] = []
            out.reserveCapacity(items.count)
            for item in items { out.append(redact(item, &scrubber, &budget)) }
            return .array(out)
        case .object(let object):
            var out: [(String, JSON)] = []
            out.reserveCapacity(object.count)
            for (key, v) in object {
                if structuralKeys.contains(key), case .string = v { out.append((key, v)); continue }
                out.append((key, redact(v, &scrubber, &budget)))
            }
            return .object(JSONObject(out))
        default:
            return value
        }
    }

    static func scrub(_ text: String, _ scrubber: inout PIIScrubber, _ budget: inout Int) -> String {
        let size = text.utf8.count
        guard size <= budget else { return tooLargePlaceholder }
        budget -= size
        return scrubber.scrub(text)
    }
}
