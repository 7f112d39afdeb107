/// Why a transfer failed. Two renderings: `description` for the log (endpoint name, curl's detailed message, which
/// may include the upstream's address) and `publicSummary` for a client (neutral, no name or address). Neither ever
/// contains an API key.
public enum UpstreamError: Error, Sendable, CustomStringConvertible, Equatable {
    /// DNS failure, connection refused, TLS handshake or certificate failure.
    case connectFailed(endpoint: String, reason: UpstreamFailureReason)
    /// `phase` is "connect", "first byte", "next byte" (the idle limit after the head) or "total"; `seconds` is
    /// the limit that was exceeded.
    case timedOut(endpoint: String, phase: String, seconds: Double)
    /// The connection broke or the upstream misbehaved after the request was sent (reset mid-stream etc.).
    case transferFailed(endpoint: String, reason: UpstreamFailureReason)
    /// `UpstreamTransfer.cancel()` was called.
    case cancelled
    /// The request cannot be sent at all: no endpoints, malformed URL, header with a line break...
    case invalidRequest(String)
    /// The client was shut down before the transfer completed.
    case shutdown

    /// The detailed text, for logs.
    public var description: String {
        switch self {
        case let .connectFailed(endpoint, reason):
            return "upstream \(endpoint): connect failed: \(reason.message)"
        case let .timedOut(endpoint, phase, seconds):
            return "upstream \(endpoint): timed out waiting for \(phase) after \(seconds)s"
        case let .transferFailed(endpoint, reason):
            return "upstream \(endpoint): transfer failed: \(reason.message)"
        case .cancelled:
            return "upstream transfer cancelled"
        case let .invalidRequest(message):
            return "invalid upstream request: \(message)"
        case .shutdown:
            return "upstream client shut down"
        }
    }

    /// A neutral phrase a client may see, e.g. "connection refused" or "timed out while connecting": it names no
    /// endpoint, host, address or port, and carries no curl text.
    public var publicSummary: String {
        switch self {
        case let .connectFailed(_, reason), let .transferFailed(_, reason):
            return reason.summary
        case let .timedOut(_, phase, _):
            switch phase {
            case "connect": return "timed out while connecting"
            case "first byte": return "timed out waiting for the response"
            case "next byte": return "the response stalled"
            default: return "timed out"
            }
        case .cancelled:
            return "cancelled"
        case .invalidRequest:
            return "the upstream request could not be built"
        case .shutdown:
            return "shutting down"
        }
    }

    /// True for the failures that a fresh attempt may cure: connect failures and timeouts before the head.
    var isRetryable: Bool {
        switch self {
        case .connectFailed: return true
        case let .timedOut(_, phase, _): return phase == "connect" || phase == "first byte"
        default: return false
        }
    }
}
