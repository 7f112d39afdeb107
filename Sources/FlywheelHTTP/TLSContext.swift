import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// Whether a TLS listener asks clients for a certificate (mutual TLS between services).
public enum TLSClientAuthentication: String, Sendable, CaseIterable {
    /// No certificate is asked for.
    case none
    /// A certificate is asked for; one that is sent must verify against the client CAs, none is fine.
    case optional
    /// A certificate that verifies against the client CAs is required; without one the handshake fails.
    case require
}

/// The files a TLS listener is made of, read whenever a `TLSContext` is built (at start and at each reload).
public struct TLSConfiguration: Sendable, Equatable {
    /// PEM: the server certificate first, then any intermediates.
    public var certificateFile: String
    /// PEM, not passphrase-protected (a protected key fails to load rather than prompt).
    public var privateKeyFile: String
    /// PEM bundle of the CAs client certificates must chain to; required unless `clientAuthentication` is none.
    public var clientCAFile: String?
    public var clientAuthentication: TLSClientAuthentication

    public init(certificateFile: String, privateKeyFile: String, clientCAFile: String? = nil,
                clientAuthentication: TLSClientAuthentication = .none) {
        self.certificateFile = certificateFile
        self.privateKeyFile = privateKeyFile
        self.clientCAFile = clientCAFile
        self.clientAuthentication = clientAuthentication
    }
}

/// Why a `TLSContext` could not be built, in words for the operator (the file, and what is wrong with it).
public struct TLSContextError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

/// An OpenSSL server context built from a `TLSConfiguration`: TLS 1.2 or 1.3, forward-secret AEAD ciphers,
/// ALPN "http/1.1", the certificate chain and its key (checked to match), and for mutual TLS the client CAs.
///
/// Immutable once built, so any thread may use it (OpenSSL locks its own shared parts: reference counts, the
/// session cache). Each connection's `SSL` holds its own reference to the context it was accepted with, so
/// replacing a server's context (`HTTPServer.replaceTLSContext`) leaves established connections as they are.
public final class TLSContext: @unchecked Sendable {
    // Safety: `handle` is configured in `init` and only read afterwards (SSL_new), which OpenSSL allows from any
    // thread; everything else is a `let` of a Sendable type.
    let handle: OpaquePointer
    public let configuration: TLSConfiguration
    /// The certificate's subject, serial number and expiry, for the operator's output.
    public let certificateSummary: String

    /// Reads and checks the files: each must exist and be readable, hold PEM of the right kind, the key must
    /// belong to the certificate, and the certificate must not have expired. Throws a message naming the file.
    public init(_ configuration: TLSConfiguration) throws(TLSContextError) {
        try Self.checkReadable(configuration.certificateFile, what: "certificate file")
        try Self.checkReadable(configuration.privateKeyFile, what: "key file")
        if configuration.clientAuthentication != .none {
            guard let ca = configuration.clientCAFile else {
                throw TLSContextError(description: "client_auth \(configuration.clientAuthentication.rawValue) needs a client CA file")
            }
            try Self.checkReadable(ca, what: "client CA file")
        }
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw TLSContextError(description: "cannot create a TLS context: \(Self.drainErrors())")
        }
        do throws(TLSContextError) {
            fw_tls_server_defaults(context)
            fw_tls_refuse_passphrase_prompt(context)
            fw_tls_select_http11(context)
            // TLS 1.2: ECDHE key exchange and AEAD ciphers only; TLS 1.3 keeps OpenSSL's (all AEAD) defaults.
            guard SSL_CTX_set_cipher_list(context, "ECDHE+AESGCM:ECDHE+CHACHA20") == 1 else {
                throw TLSContextError(description: "cannot set the cipher list: \(Self.drainErrors())")
            }
            let sessionContext = Array("flywheel".utf8)
            _ = SSL_CTX_set_session_id_context(context, sessionContext, UInt32(sessionContext.count))
            guard SSL_CTX_use_certificate_chain_file(context, configuration.certificateFile) == 1 else {
                throw TLSContextError(description:
                    "certificate file \(configuration.certificateFile) holds no usable PEM certificate (\(Self.drainErrors()))")
            }
            guard SSL_CTX_use_PrivateKey_file(context, configuration.privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
                let reasons = Self.drainErrors()
                if reasons.contains("mismatch") {
                    throw TLSContextError(description:
                        "key file \(configuration.privateKeyFile) does not match the certificate in \(configuration.certificateFile)")
                }
                throw TLSContextError(description:
                    "key file \(configuration.privateKeyFile) holds no usable unencrypted PEM private key (\(reasons))")
            }
            guard SSL_CTX_check_private_key(context) == 1 else {
                _ = Self.drainErrors()
                throw TLSContextError(description:
                    "key file \(configuration.privateKeyFile) does not match the certificate in \(configuration.certificateFile)")
            }
            guard let certificate = SSL_CTX_get0_certificate(context) else {
                throw TLSContextError(description: "certificate file \(configuration.certificateFile) holds no certificate")
            }
            let expiry = Self.describeTime(X509_get0_notAfter(certificate))
            if X509_cmp_current_time(X509_get0_notAfter(certificate)) <= 0 {
                throw TLSContextError(description: "the certificate in \(configuration.certificateFile) expired on \(expiry)")
            }
            certificateSummary = "subject \(Self.subject(of: certificate)), serial \(Self.serial(of: certificate)), expires \(expiry)"
            if configuration.clientAuthentication != .none, let ca = configuration.clientCAFile {
                guard SSL_CTX_load_verify_locations(context, ca, nil) == 1,
                      let names = SSL_load_client_CA_file(ca) else {
                    throw TLSContextError(description: "client CA file \(ca) holds no usable PEM certificate (\(Self.drainErrors()))")
                }
                SSL_CTX_set_client_CA_list(context, names)
                let mode = configuration.clientAuthentication == .require
                    ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER
                SSL_CTX_set_verify(context, mode, nil)
            }
        } catch {
            SSL_CTX_free(context)
            throw error
        }
        handle = context
        self.configuration = configuration
    }

    deinit {
        SSL_CTX_free(handle)
    }

    private static func checkReadable(_ path: String, what: String) throws(TLSContextError) {
        guard !path.isEmpty else { throw TLSContextError(description: "\(what): no path given") }
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw TLSContextError(description: "\(what) \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw TLSContextError(description: "\(what) \(path): not a regular file")
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw TLSContextError(description: "\(what) \(path): cannot read: \(String(cString: strerror(errno)))")
        }
        Glibc.close(descriptor)
    }

    /// The reasons on this thread's OpenSSL error queue, oldest first; empties the queue.
    static func drainErrors() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            if let reason = ERR_reason_error_string(code) {
                reasons.append(String(cString: reason))
            } else {
                reasons.append("error \(code)")
            }
        }
        return reasons.isEmpty ? "no detail from OpenSSL" : reasons.joined(separator: "; ")
    }

    private static func subject(of certificate: OpaquePointer) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard X509_NAME_oneline(X509_get_subject_name(certificate), &buffer, Int32(buffer.count)) != nil else { return "?" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func serial(of certificate: OpaquePointer) -> String {
        guard let number = ASN1_INTEGER_to_BN(X509_get_serialNumber(certificate), nil) else { return "?" }
        defer { BN_free(number) }
        guard let hex = BN_bn2hex(number) else { return "?" }
        defer { CRYPTO_free(hex, nil, 0) }
        return String(cString: hex)
    }

    private static func describeTime(_ time: UnsafePointer<ASN1_TIME>?) -> String {
        var parts = tm()
        guard let time, ASN1_TIME_to_tm(time, &parts) == 1 else { return "?" }
        var buffer = [CChar](repeating: 0, count: 32)
        let count = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S UTC", &parts)
        return count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
}
