import COpenSSL
import FlywheelHTTP

/// Who may use the admin endpoints (the dashboard, `POST /admin/reload`, `/metrics` when
/// `auth.metrics_require_admin`). With `auth.admin_key` set: that key, as `Authorization: Bearer <key>`, as the
/// password of HTTP Basic (a browser's own prompt), or the session cookie `POST /login` sets (HttpOnly,
/// SameSite=Strict; an HMAC of its expiry under the admin key, so it is not the key and dies with a key change).
/// Client keys are never admin keys and the admin key is never a client key. Without an admin key the admin
/// endpoints answer only peers on a loopback address, as they did before there was one (the dashboard then takes a
/// client key when keys exist).
struct AdminAccess: Sendable {
    static let cookieName = "flywheel_admin"
    /// How long a login lasts.
    static let sessionSeconds: Int64 = 12 * 3600

    private let key: [UInt8]?
    private let keyDigest: [UInt8]?
    let metricsRequireAdmin: Bool

    init(adminKey: String?, metricsRequireAdmin: Bool) {
        self.key = adminKey.map { Array($0.utf8) }
        self.keyDigest = adminKey.map { VirtualKeyCredential.sha256(Array($0.utf8)) }
        self.metricsRequireAdmin = metricsRequireAdmin && adminKey != nil
    }

    var isConfigured: Bool { key != nil }

    enum Verdict: Equatable {
        case allowed
        /// No or wrong admin credentials.
        case unauthenticated
        /// No admin key is configured and the peer is not on this machine.
        case notLoopback
        /// No admin key is configured: the endpoint behaves as before (loopback peer).
        case unconfigured
    }

    /// `withCookie`: whether the session cookie counts (pages and their data, not state-changing posts).
    func check(_ request: HTTPRequest, withCookie: Bool, nowSeconds: Int64) -> Verdict {
        guard key != nil else { return Self.isLoopback(request.remoteAddress) ? .unconfigured : .notLoopback }
        if let value = request.headers["Authorization"], value.utf8.count <= APIKeyAuthenticator.maxKeyBytes + 16,
           let token = APIKeyAuthenticator.bearerToken(value) ?? APIKeyAuthenticator.basicPassword(value) {
            return matches(token) ? .allowed : .unauthenticated
        }
        if withCookie, let session = Self.cookie(Self.cookieName, in: request.headers["Cookie"]),
           validSession(session, nowSeconds: nowSeconds) {
            return .allowed
        }
        return .unauthenticated
    }

    /// Whether `token` is the admin key (constant time).
    func matches(_ token: String) -> Bool {
        guard let keyDigest, token.utf8.count <= APIKeyAuthenticator.maxKeyBytes else { return false }
        return VirtualKeyCredential.constantTimeEqual(VirtualKeyCredential.sha256(Array(token.utf8)), keyDigest)
    }

    /// A session value good until `nowSeconds + sessionSeconds`.
    func newSession(nowSeconds: Int64) -> String {
        let expiry = nowSeconds + Self.sessionSeconds
        return "\(expiry).\(VirtualKeyCredential.hex(mac(expiry)))"
    }

    func validSession(_ value: String, nowSeconds: Int64) -> Bool {
        let parts = value.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, parts[0].utf8.count <= 12, let expiry = Int64(parts[0]), expiry > nowSeconds,
              expiry <= nowSeconds + Self.sessionSeconds, let given = VirtualKeyCredential.unhex(String(parts[1])) else { return false }
        return VirtualKeyCredential.constantTimeEqual(given, mac(expiry))
    }

    private func mac(_ expiry: Int64) -> [UInt8] {
        guard let key else { return [] }
        let message = Array("flywheel-admin-session:\(expiry)".utf8)
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        key.withUnsafeBytes { k in
            message.withUnsafeBytes { m in
                _ = HMAC(EVP_sha256(), k.baseAddress, Int32(k.count), m.baseAddress?.assumingMemoryBound(to: UInt8.self), m.count, &out, &length)
            }
        }
        return Array(out.prefix(Int(length)))
    }

    /// The value of cookie `name` in a `Cookie` header.
    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header, header.utf8.count <= 8192 else { return nil }
        for pair in header.split(separator: ";") {
            let item = pair.trimmingCharacters(in: " \t")
            if item.hasPrefix(name + "=") { return String(item.dropFirst(name.count + 1)) }
        }
        return nil
    }

    /// `127.0.0.0/8`, `::1` or an in-process request (no address).
    static func isLoopback(_ remoteAddress: String) -> Bool {
        remoteAddress.isEmpty || remoteAddress.hasPrefix("127.") || remoteAddress.hasPrefix("[::1]:")
            || remoteAddress.hasPrefix("[::ffff:127.")
    }
}
