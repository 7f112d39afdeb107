import Foundation
import FlywheelConfig
import FlywheelHTTP

/// Checks `Authorization: Bearer <key>` against the configured Flywheel keys. With no keys configured every
/// client is let through (the SDKs always send some key, which then means nothing to us).
public struct APIKeyAuthenticator: Sendable {
    private let idsByKey: [String: String]

    public init(keys: [GatewayConfiguration.APIKey]) {
        var table: [String: String] = [:]
        for k in keys { table[k.key] = k.id }
        idsByKey = table
    }

    public var isEnabled: Bool { !idsByKey.isEmpty }

    public enum Outcome: Sendable, Equatable {
        case open               // no keys configured
        case authenticated(id: String)
        case rejected
    }

    /// A key given in a URL's query (`key=...`), for pages a browser opens.
    public func authenticate(queryKey key: String?) -> Outcome {
        guard isEnabled else { return .open }
        guard let key, let id = idsByKey[key] else { return .rejected }
        return .authenticated(id: id)
    }

    public func authenticate(_ headers: HTTPHeaders) -> Outcome {
        guard isEnabled else { return .open }
        guard let value = headers["Authorization"], let key = Self.bearerToken(value) ?? Self.basicPassword(value) else {
            return .rejected
        }
        // Dictionary lookup hashes the whole key, so its timing says nothing useful about near misses.
        guard let id = idsByKey[key] else { return .rejected }
        return .authenticated(id: id)
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
