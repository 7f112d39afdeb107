/// Why a connection or a transfer failed, told twice: `cause`, a neutral category whose `summary` may be shown to
/// a client, and `message`, curl's detailed text (it may name the upstream's host, address and port), for the log.
public struct UpstreamFailureReason: Sendable, Equatable, CustomStringConvertible {
    /// The kind of failure, from curl's error code (and the socket's errno where curl reports one).
    public enum Cause: String, Sendable, Equatable {
        case hostNotFound
        case connectionRefused
        case hostUnreachable
        case couldNotConnect
        case tlsHandshakeFailed
        case tlsCertificateRejected
        case connectionReset
        case emptyReply
        case malformedResponse
        case responseIncomplete
        case sendFailed
        case receiveFailed
        /// The gateway itself could not open a socket (EMFILE, ENFILE): nothing is wrong with the upstream.
        case outOfDescriptors
        case other

        /// A short phrase that names no host, address or port, e.g. "connection refused".
        public var summary: String {
            switch self {
            case .hostNotFound: return "upstream host not found"
            case .connectionRefused: return "connection refused"
            case .hostUnreachable: return "upstream host unreachable"
            case .couldNotConnect: return "could not connect"
            case .tlsHandshakeFailed: return "TLS handshake failed"
            case .tlsCertificateRejected: return "TLS certificate rejected"
            case .connectionReset: return "connection reset"
            case .emptyReply: return "upstream closed the connection without a response"
            case .malformedResponse: return "malformed upstream response"
            case .responseIncomplete: return "upstream response ended early"
            case .sendFailed: return "sending the request failed"
            case .receiveFailed: return "receiving the response failed"
            case .outOfDescriptors: return "the gateway is out of file descriptors"
            case .other: return "transfer failed"
            }
        }
    }

    public var cause: Cause
    /// curl's message with its error code, e.g. "Failed to connect to 10.0.0.7 port 8000 ...: Connection refused
    /// (curl error 7)". For logs only: it may name the upstream's address. Never contains an API key.
    public var message: String

    public init(cause: Cause, message: String) {
        self.cause = cause
        self.message = message
    }

    /// The client-safe phrase of `cause`.
    public var summary: String { cause.summary }

    /// The detailed `message` (for logs).
    public var description: String { message }
}
