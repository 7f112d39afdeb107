import FlywheelJSON
import Foundation

/// The JSON parser and writer over arbitrary bytes. Invariants:
/// - parse → write → parse gives an equal value (numbers by value: `1.0` is written `1` and reads back as an
///   integer), and writing that again gives the same bytes; the pretty printer's text parses to it too;
/// - under small limits (depth 4, 8 members, 8 elements, 16-byte strings, duplicate keys refused) a document
///   is either accepted with the same value as under the defaults, or refused for a limit it really exceeds
///   (or a duplicate key); a document within every limit is never refused;
/// - anything accepted is JSON to Foundation's `JSONSerialization` as well (ours is the stricter parser).
enum JSONHarness {
    static let small = JSONParser.Limits(maxDepth: 4, maxObjectMembers: 8, maxArrayElements: 8, maxStringBytes: 16)

    static func run(_ data: [UInt8]) {
        let parsed: JSON
        do {
            parsed = try JSONParser.parse(data)
        } catch {
            check(error.offset >= 0 && error.offset <= data.count, "error offset \(error.offset) of \(data.count)")
            if let limit = error.limit { check(limit == .maxDepth, "a default limit other than depth: \(limit)") }
            var strict = small
            strict.rejectsDuplicateKeys = true
            check((try? JSONParser.parse(data, limits: strict)) == nil, "refused by default, accepted under small limits")
            return
        }

        let written = parsed.serialized()
        guard let again = try? JSONParser.parse(written) else {
            check(false, "written text does not parse: \(String(decoding: written.prefix(200), as: UTF8.self))")
            return
        }
        check(equivalent(parsed, again), "parse → write → parse changed the value")
        check(again.serialized() == written, "writing is not stable")
        let pretty = parsed.prettyPrinted()
        check((try? JSONParser.parse(pretty)).map { equivalent($0, parsed) } ?? false, "pretty text parses differently")

        checkSmallLimits(data, parsed)

        check((try? JSONSerialization.jsonObject(with: Data(data), options: .fragmentsAllowed)) != nil,
              "accepted, but Foundation refuses it")
    }

    static func checkSmallLimits(_ data: [UInt8], _ parsed: JSON) {
        var limits = small
        limits.rejectsDuplicateKeys = true
        let stats = Stats(parsed)
        do {
            let value = try JSONParser.parse(data, limits: limits)
            check(value == parsed, "small limits changed the value")
            check(stats.depth <= 4 && stats.elements <= 8 && stats.members <= 8 && stats.longestString <= 16,
                  "small limits accepted a document beyond them: \(stats)")
        } catch {
            switch error.limit {
            case .maxDepth?: check(stats.depth > 4, "refused for depth \(stats.depth)")
            case .maxArrayElements?: check(stats.elements > 8, "refused for \(stats.elements) elements")
            case .maxStringBytes?: check(stats.longestString > 16, "refused for a string of \(stats.longestString)")
            case .maxObjectMembers?: break  // counted before duplicate keys merge, so not checkable from the value
            case nil: check(error.message.hasPrefix("duplicate key"), "refused under small limits: \(error)")
            }
            if stats.depth <= 4 && stats.elements <= 8 && stats.longestString <= 16 {
                check(error.limit == .maxObjectMembers || error.limit == nil, "refused within the limits: \(error)")
            }
        }
    }

    /// Equal, with numbers compared by value whichever literal form they had.
    static func equivalent(_ a: JSON, _ b: JSON) -> Bool {
        switch (a, b) {
        case (.int, .double), (.double, .int), (.double, .double):
            return a.doubleValue == b.doubleValue
        case let (.array(x), .array(y)):
            return x.count == y.count && zip(x, y).allSatisfy(equivalent)
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x.entries, y.entries).allSatisfy { $0.key == $1.key && equivalent($0.value, $1.value) }
        default:
            return a == b
        }
    }

    struct Stats: CustomStringConvertible {
        var depth = 0
        var elements = 0
        var members = 0
        var longestString = 0

        init(_ value: JSON) { visit(value, depth: 0) }

        mutating func visit(_ value: JSON, depth level: Int) {
            switch value {
            case .string(let s):
                longestString = max(longestString, s.utf8.count)
            case .array(let items):
                depth = max(depth, level + 1)
                elements += items.count
                for item in items { visit(item, depth: level + 1) }
            case .object(let object):
                depth = max(depth, level + 1)
                members += object.count
                for entry in object {
                    longestString = max(longestString, entry.key.utf8.count)
                    visit(entry.value, depth: level + 1)
                }
            default:
                break
            }
        }

        var description: String {
            "depth \(depth), \(elements) elements, \(members) members, longest string \(longestString)"
        }
    }
}
