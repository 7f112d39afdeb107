import Dispatch
import FlywheelConfig
import FlywheelHTTP
import FlywheelJSON
import FlywheelStore

extension Gateway {
    /// Reloads run here, one at a time, never on an event loop (a reload may load model files).
    private static let reloadQueue = DispatchQueue(label: "flywheel.admin-reload")

    /// Takes the configuration's `auth` section from now on: configured client keys, the admin key and the metrics
    /// rule (a reload). Sessions made under another admin key stop working.
    public func setAuth(_ auth: GatewayConfiguration.Auth) {
        authenticator.setConfigKeys(auth.keys)
        let access = AdminAccess(adminKey: auth.adminKey, metricsRequireAdmin: auth.metricsRequireAdmin)
        admin.withLock { $0 = access }
    }

    /// Takes `keys` as the virtual keys from now on (the daemon's key watch calls this when the log's keys
    /// changed). `spentUSD` gives the log's spend of keys not tracked yet; keys with limits get a rate window,
    /// the windows of keys that are gone are dropped.
    public func setVirtualKeys(_ keys: [StoredAPIKey], spentUSD: (String) -> Double) {
        authenticator.setVirtualKeys(keys)
        var limited = Set<String>()
        for key in keys where key.revokedAtMillis == nil
            && (key.requestsPerMinute != nil || key.tokensPerMinute != nil || key.budgetUSD != nil) {
            limited.insert(key.id)
            if ledger.keyUsage.spent(keyID: key.id) == nil {
                ledger.keyUsage.track(keyID: key.id, spentUSD: key.budgetUSD == nil ? 0 : spentUSD(key.id))
            }
        }
        ledger.keyUsage.retain(limited)
    }

    /// Whether clients must present a key now (a configured or a virtual one exists).
    public var requiresClientKeys: Bool { authenticator.isEnabled }

    /// What `POST /admin/reload` runs: the daemon's reload, returning one line per part reloaded, throwing the
    /// configuration's error.
    public func setReloader(_ reload: @escaping @Sendable () throws -> [String]) {
        reloader.withLock { $0 = reload }
    }

    /// `POST /admin/reload`: the reload SIGHUP runs; 200 with what was reloaded, 400 with the configuration's error
    /// (the old configuration stays in force).
    func reloadConfiguration(_ request: GatewayRequest) {
        let requestID = request.requestID, writer = request.writer
        guard let reload = reloader.withLock({ $0 }) else {
            return writer.send(OpenAIError(status: 503, message: "Reloading is not available in this process.",
                                           type: "server_error", code: "reload_unavailable").response(requestID: requestID))
        }
        Self.reloadQueue.async {
            do {
                let lines = try reload()
                writer.send(.json(["reloaded": .array(lines.map { .string($0) })], requestID: requestID))
            } catch {
                let message = "The configuration was not reloaded; the previous one stays in force: \(error)"
                writer.send(OpenAIError.invalidRequest(message, code: "invalid_config").response(requestID: requestID))
            }
        }
    }

    /// `GET /login`: the form that sets the admin session cookie.
    func serveLoginPage(_ request: GatewayRequest) {
        request.writer.send(loginPageResponse(status: 200, requestID: request.requestID, next: "/", failed: false))
    }

    /// `POST /login` with `key=<admin key>` (a form): a session cookie and back to the dashboard, or the form again.
    func logIn(_ request: GatewayRequest) {
        let access = admin.withLock { $0 }
        let body = String(decoding: request.http.body.prefix(4096), as: UTF8.self)
        guard access.isConfigured else {
            return request.writer.send(OpenAIError(status: 404, message: "No admin key is configured (auth.admin_key): there is nothing to log in to.",
                                                   type: "invalid_request_error", code: "admin_key_not_configured").response(requestID: request.requestID))
        }
        guard request.http.body.count <= 4096, let key = Self.queryValue("key", in: body), access.matches(key) else {
            return request.writer.send(loginPageResponse(status: 403, requestID: request.requestID, next: "/", failed: true))
        }
        let session = access.newSession(nowSeconds: WallClock.unixMillis() / 1000)
        var headers = HTTPHeaders()
        headers.add("Location", "/")
        headers.add("Cache-Control", "no-store")
        headers.add("Set-Cookie", "\(AdminAccess.cookieName)=\(session); Path=/; Max-Age=\(AdminAccess.sessionSeconds); HttpOnly; SameSite=Strict\(cookieSecurity)")
        headers.add("x-request-id", request.requestID)
        request.writer.send(HTTPResponse(status: 303, headers: headers))
    }

    /// `POST /logout`: forgets the session cookie.
    func logOut(_ request: GatewayRequest) {
        var headers = HTTPHeaders()
        headers.add("Location", "/login")
        headers.add("Set-Cookie", "\(AdminAccess.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict\(cookieSecurity)")
        headers.add("x-request-id", request.requestID)
        request.writer.send(HTTPResponse(status: 303, headers: headers))
    }

    func loginPageResponse(status: Int, requestID: String, next: String, failed: Bool) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/html; charset=utf-8")
        headers.add("Cache-Control", "no-store")
        headers.add("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
        headers.add("x-request-id", requestID)
        let note = failed ? "<p class=\"bad\">That is not the admin key.</p>" : ""
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><title>Flywheel: log in</title>
            <style>body{font:15px system-ui,sans-serif;margin:4em auto;max-width:24em}input{width:100%;padding:.4em;margin:.4em 0}.bad{color:#b00}</style>
            </head><body><h1>Flywheel</h1><p>The dashboard needs the admin key (<code>auth.admin_key</code>).</p>\(note)
            <form method="post" action="/login"><input id="key" name="key" type="password" autocomplete="current-password" autofocus>
            <button id="login" type="submit">Log in</button></form></body></html>
            """
        return HTTPResponse(status: status, headers: headers, body: Array(html.utf8))
    }
}
