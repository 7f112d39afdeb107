import Foundation
import FlywheelConfig
import FlywheelHTTP
import FlywheelStore
import Synchronization

/// Checks `Authorization: Bearer <key>` against the configured keys (`auth.keys`) and the virtual keys of the log
/// (`flywheel keys`, swapped in by the daemon as they change). While there is neither, every client is let
/// through (the SDKs always send some key, which then means nothing to us). A virtual key, once one was created,
/// keeps auth on even when all of them are revoked: revoking the last key never opens the gateway.
/// Thread-safe: read on every event loop, swapped by the daemon's key watch.
public final class APIKeyAuthenticator: Sendable {
    /// A presented key longer than this is refused without looking at it (real ones are under 100 bytes).
    static let maxKeyBytes = 1024

    private struct ConfigKey: Sendable {
        var id: String
        var digest: [UInt8]
    }
    private struct State: Sendable {
        var config: [ConfigKey] = []
        var virtual: [String: StoredAPIKey] = [:]
    }
    private let state: Mutex<State>

    public init(keys: [GatewayConfiguration.APIKey]) {
        state = Mutex(State(config: Self.digests(keys)))
    }

    /// Whether clients must present a key.
    public var isEnabled: Bool { state.withLock { !$0.config.isEmpty || !$0.virtual.isEmpty } }

    /// Takes `keys` as the configured keys from now on (a reload).
    public func setConfigKeys(_ keys: [GatewayConfiguration.APIKey]) {
        let digests = Self.digests(keys)
        state.withLock { $0.config = digests }
    }

    /// Takes `keys` as the virtual keys from now on (revoked and expired ones included: they are refused by name).
    public func setVirtualKeys(_ keys: [StoredAPIKey]) {
        let table = Dictionary(keys.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        state.withLock { $0.virtual = table }
    }

    private static func digests(_ keys: [GatewayConfiguration.APIKey]) -> [ConfigKey] {
        keys.map { ConfigKey(id: $0.id, digest: VirtualKeyCredential.sha256(Array($0.key.utf8))) }
    }

    enum Outcome: Sendable, Equatable {
        case open               // no keys at all
        case authenticated(ClientKey)
        case rejected(Refusal)
    }

    enum Refusal: Sendable, Equatable {
        case missing
        case invalid
        /// A virtual key past its expiry, or revoked: its id is logged with the refusal.
        case expired(id: String)
        case revoked(id: String)

        var error: OpenAIError {
            switch self {
            case .missing:
                OpenAIError(status: 401, message: "Missing API key. Send it as 'Authorization: Bearer <key>'.",
                            type: "invalid_request_error", code: "invalid_api_key")
            case .invalid: .invalidAPIKey()
            case .expired(let id):
                OpenAIError(status: 401, message: "The API key \(id) has expired.", type: "invalid_request_error", code: "invalid_api_key")
            case .revoked(let id):
                OpenAIError(status: 401, message: "The API key \(id) has been revoked.", type: "invalid_request_error", code: "invalid_api_key")
            }
        }

        var keyID: String? {
            switch self {
            case .expired(let id), .revoked(let id): id
            case .missing, .invalid: nil
            }
        }
    }

    /// A key given in a URL's query (`key=...`), for pages a browser opens.
    func authenticate(queryKey key: String?, nowMillis: Int64) -> Outcome {
        guard isEnabled else { return .open }
        guard let key else { return .rejected(.missing) }
        return authenticate(token: key, nowMillis: nowMillis)
    }

    func authenticate(_ headers: HTTPHeaders, nowMillis: Int64) -> Outcome {
        guard isEnabled else { return .open }
        guard let value = headers["Authorization"] else { return .rejected(.missing) }
        guard value.utf8.count <= Self.maxKeyBytes + 16, let key = Self.bearerToken(value) ?? Self.basicPassword(value) else {
            return .rejected(.invalid)
        }
        return authenticate(token: key, nowMillis: nowMillis)
    }

    func authenticate(token: String, nowMillis: Int64) -> Outcome {
        guard token.utf8.count <= Self.maxKeyBytes else { return .rejected(.invalid) }
        if let (id, secret) = VirtualKeyCredential.parse(token) {
            let stored = state.withLock { $0.virtual[id] }
            guard let stored else {
                // Hash anyway, so an unknown id costs what a known one does.
                _ = VirtualKeyCredential.verify(secret: secret, saltHex: "00", hashHex: "00")
                return .rejected(.invalid)
            }
            guard VirtualKeyCredential.verify(secret: secret, saltHex: stored.saltHex, hashHex: stored.hashHex) else {
                return .rejected(.invalid)
            }
            if stored.revokedAtMillis != nil { return .rejected(.revoked(id: id)) }
            if let expiry = stored.expiresAtMillis, nowMillis >= expiry { return .rejected(.expired(id: id)) }
            return .authenticated(ClientKey(id: id, models: stored.models,
                                            limits: KeyLimits(requestsPerMinute: stored.requestsPerMinute,
                                                              tokensPerMinute: stored.tokensPerMinute, budgetUSD: stored.budgetUSD)))
        }
        // Configured keys: compare digests, all of them, in constant time each, so neither the match's place nor
        // a near miss shows in the time taken.
        let digest = VirtualKeyCredential.sha256(Array(token.utf8))
        let config = state.withLock { $0.config }
        var found: String?
        for key in config where VirtualKeyCredential.constantTimeEqual(key.digest, digest) && found == nil { found = key.id }
        guard let found else { return .rejected(.invalid) }
        return .authenticated(ClientKey(id: found, models: nil, limits: KeyLimits()))
    }

    /// The password of `Basic base64(user:password)`: SDKs that authenticate that way (Langfuse's public and
    /// secret key pair) send a Flywheel key as the secret.
    static func basicPassword(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic", parts[1].utf8.count <= 4096,
              let data = Data(base64Encoded: String(parts[1])), let text = String(data: data, encoding: .utf8),
              let colon = text.firstIndex(of: ":") else { return nil }
        let password = String(text[text.index(after: colon)...])
        return password.isEmpty ? nil : password
    }

    static func bearerToken(_ header: String) -> String? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: " \t")
        return token.isEmpty ? nil : token
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        let chars = Set(set)
        var s = Substring(self)
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
