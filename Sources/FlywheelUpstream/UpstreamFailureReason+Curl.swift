import CCurl
import Glibc

extension UpstreamFailureReason.Cause {
    /// The cause of a failed transfer from curl's error code and, where curl recorded one, the socket's errno
    /// (CURLINFO_OS_ERRNO), which tells a refused connection from an unreachable host and a reset from other
    /// receive errors.
    init(curlCode code: CURLcode, osErrno: Int32) {
        if osErrno == EMFILE || osErrno == ENFILE {
            self = .outOfDescriptors  // socket() failed here, whatever curl made of it
            return
        }
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY:
            self = .hostNotFound
        case CURLE_COULDNT_CONNECT:
            switch osErrno {
            case ECONNREFUSED: self = .connectionRefused
            case EHOSTUNREACH, ENETUNREACH: self = .hostUnreachable
            default: self = .couldNotConnect
            }
        case CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CIPHER:
            self = .tlsHandshakeFailed
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
             CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS:
            self = .tlsCertificateRejected
        case CURLE_GOT_NOTHING:
            self = .emptyReply
        case CURLE_WEIRD_SERVER_REPLY, CURLE_HTTP2, CURLE_HTTP2_STREAM, CURLE_BAD_CONTENT_ENCODING:
            self = .malformedResponse
        case CURLE_PARTIAL_FILE:
            self = .responseIncomplete
        case CURLE_SEND_ERROR:
            self = osErrno == ECONNRESET || osErrno == EPIPE ? .connectionReset : .sendFailed
        case CURLE_RECV_ERROR:
            self = osErrno == ECONNRESET ? .connectionReset : .receiveFailed
        default:
            self = .other
        }
    }

    /// True for the codes that mean no connection was made (so another attempt may succeed).
    static func isConnectFailure(_ code: CURLcode) -> Bool {
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT,
             CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CIPHER,
             CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR, CURLE_SSL_PINNEDPUBKEYNOTMATCH,
             CURLE_SSL_INVALIDCERTSTATUS:
            return true
        default:
            return false
        }
    }
}
