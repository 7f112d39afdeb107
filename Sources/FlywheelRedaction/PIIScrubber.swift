import Foundation

/// Replaces personal data and secrets in text (`flywheel export --scrub-pii`, and the log at write time with
/// `log.redact: pii`) with typed placeholders (`<EMAIL>`, `<PHONE>`,
/// `<CARD>`, `<IBAN>`, `<IP>`, `<SECRET>`), counting what it replaced for the manifest. Card numbers are
/// replaced only when they pass the Luhn check, so order numbers and ids stay.
public struct PIIScrubber {
    private struct Rule {
        let kind: String
        let pattern: NSRegularExpression
        let accept: (@Sendable (String) -> Bool)?
    }

    private let rules: [Rule]
    public private(set) var counts: [String: Int] = [:]

    public init() {
        func rule(_ kind: String, _ pattern: String, accept: (@Sendable (String) -> Bool)? = nil) -> Rule {
            // The patterns are constants of this file: a failure to compile is a programmer error.
            Rule(kind: kind, pattern: try! NSRegularExpression(pattern: pattern), accept: accept)
        }
        rules = [
            // Secrets first, so a key that contains digits is not half-replaced as a phone number.
            rule("SECRET", #"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"#),
            rule("SECRET", #"\b(?:sk|pk|rk|ghp|gho|xox[abp]|AKIA)[-_A-Za-z0-9]{16,}\b"#),
            // The look-behind starts a match only where a run of address characters starts: without it a long
            // run with no '@' is rescanned from each of its positions (quadratic; a 200 KB word took minutes).
            rule("EMAIL", #"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"#),
            rule("IBAN", #"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"#),
            rule("CARD", #"\b(?:\d[ -]?){12,18}\d\b"#, accept: { Self.passesLuhn($0) }),
            rule("IP", #"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"#),
            rule("IP", #"\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b"#),
            rule("PHONE", #"(?<![\w+])\+?\d{1,3}[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}\b"#),
        ]
    }

    public mutating func scrub(_ text: String) -> String {
        guard !text.isEmpty else { return text }
        var current = text
        for rule in rules {
            let ns = current as NSString
            let matches = rule.pattern.matches(in: current, range: NSRange(location: 0, length: ns.length))
            guard !matches.isEmpty else { continue }
            var result = ""
            var last = 0
            var replaced = 0
            for match in matches {
                let found = ns.substring(with: match.range)
                if let accept = rule.accept, !accept(found) { continue }
                result += ns.substring(with: NSRange(location: last, length: match.range.location - last))
                result += "<\(rule.kind)>"
                last = match.range.location + match.range.length
                replaced += 1
            }
            guard replaced > 0 else { continue }
            result += ns.substring(from: last)
            counts[rule.kind, default: 0] += replaced
            current = result
        }
        return current
    }

    public static func passesLuhn(_ text: String) -> Bool {
        let digits = text.compactMap(\.wholeNumberValue)
        guard (13...19).contains(digits.count) else { return false }
        var sum = 0
        for (i, d) in digits.reversed().enumerated() {
            if i % 2 == 1 {
                let doubled = d * 2
                sum += doubled > 9 ? doubled - 9 : doubled
            } else {
                sum += d
            }
        }
        return sum % 10 == 0
    }
}
