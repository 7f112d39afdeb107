/// What the log keeps of one request, chosen by the client with `x-flywheel-log`:
/// - `full` (the default, also when the header is absent): everything, as configured (`log.redact` applies);
/// - `metadata`: model, route, status, tokens, latency, cost, key id, tags, user, episode and policy decision,
///   but never the content: no request body, no response or stream text, no error text.
///
/// Any other value is refused with 400 rather than ignored: a misspelt opt-out must not store what the client
/// asked to keep out of the log. The refused request itself is logged as metadata only.
enum LogMode: Sendable, Equatable {
    case full
    case metadata
    case invalid

    static let header = "x-flywheel-log"

    init(header value: String?) {
        guard let value else { self = .full; return }
        switch value.trimmingASCIIWhitespace().lowercased() {
        case "full": self = .full
        case "metadata": self = .metadata
        default: self = .invalid
        }
    }

    static let invalidHeaderError = OpenAIError.invalidRequest(
        "x-flywheel-log must be 'metadata' (log this request's metadata only, never its content) or 'full'.",
        param: header, code: "invalid_log_mode")
}

private extension String {
    func trimmingASCIIWhitespace() -> Substring {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\t" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" { s.removeLast() }
        return s
    }
}
