/// Why a transfer failed. Messages name the endpoint and curl's own error text; they never contain an API key.
public enum UpstreamError: Error, Sendable, CustomStringConvertible, Equatable {
    /// DNS failure, connection refused, TLS handshake or certificate failure.
    case connectFailed(endpoint: String, message: String)
    /// `phase` is "connect", "first byte" or "total"; `seconds` is the limit that was exceeded.
    case timedOut(endpoint: String, phase: String, seconds: Double)
    /// The connection broke or the upstream misbehaved after the request was sent (reset mid-stream etc.).
    case transferFailed(endpoint: String, message: String)
    /// `UpstreamTransfer.cancel()` was called.
    case cancelled
    /// The request cannot be sent at all: no endpoints, malformed URL, header with a line break...
    case invalidRequest(String)
    /// The client was shut down before the transfer completed.
    case shutdown

    public var description: String {
        switch self {
        case let .connectFailed(endpoint, message):
            return "upstream \(endpoint): connect failed: \(message)"
        case let .timedOut(endpoint, phase, seconds):
            return "upstream \(endpoint): timed out waiting for \(phase) after \(seconds)s"
        case let .transferFailed(endpoint, message):
            return "upstream \(endpoint): transfer failed: \(message)"
        case .cancelled:
            return "upstream transfer cancelled"
        case let .invalidRequest(message):
            return "invalid upstream request: \(message)"
        case .shutdown:
            return "upstream client shut down"
        }
    }

    /// True for the failures that a fresh attempt may cure: connect failures and timeouts before the head.
    var isRetryable: Bool {
        switch self {
        case .connectFailed: return true
        case let .timedOut(_, phase, _): return phase != "total"
        default: return false
        }
    }
}
