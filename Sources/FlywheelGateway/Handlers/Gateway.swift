import FlywheelConfig
import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// The OpenAI-compatible front door. Every request takes the same path on its event loop: a request id, the
/// route table, the endpoint's access check, then its handler. Never blocks the loop: upstream work runs on
/// the loop's own curl multi handle, generations on the inference thread, log rows on the writer thread.
public final class Gateway: HTTPResponder {
    /// The configuration's routes, keys, prices and limits in force; swapped whole by `apply` (a reload).
    /// A request reads it once, when it arrives, and keeps that one to its end.
    private let current: Mutex<GatewaySettings>
    let upstreams: UpstreamPool
    let ledger: RequestLedger
    public let metrics: GatewayMetrics
    /// Client keys: the configured ones and the log's virtual keys (swapped in by the daemon's key watch).
    let authenticator: APIKeyAuthenticator
    /// Who may use the admin endpoints; swapped whole by `setAuth`.
    let admin: Mutex<AdminAccess>
    /// Runs the daemon's reload (the one SIGHUP runs) for `POST /admin/reload`; set by the daemon.
    let reloader = Mutex<(@Sendable () throws -> [String])?>(nil)
    /// Models served in process, by request name, and the facade that runs them (nil when there is none);
    /// local models take precedence over routes. Swapped as a whole by `setLocalModels` (a reload).
    private let local: Mutex<(models: [String: LocalModelAdapter], inference: LocalInference?)>
    let catalog: ModelCatalog
    /// Traffic policies by requested model name; consulted before local models and routes.
    let policies: PolicyTable
    /// Admission of shadow runs (sampling, concurrency, shedding).
    let shadows = ShadowGate()
    /// What background jobs computed for the dashboard.
    let dashboard = DashboardFeed()
    private let routes: RouteTable
    /// Reads the HTTP server's open-connection count for `/metrics`; set once the server exists.
    let connectionCounter = Mutex<(@Sendable () -> Int)?>(nil)
    /// The listener's TLS sessions alive and failed handshakes, when it speaks HTTPS.
    let tlsCounter = Mutex<(@Sendable () -> (sessions: Int, handshakeFailures: Int))?>(nil)

    public init(configuration: GatewayConfiguration, upstreams: UpstreamPool, log: any LogSink, metrics: GatewayMetrics = GatewayMetrics(),
                localModels: [LocalModelAdapter] = [], inference: LocalInference? = nil) {
        let settings = GatewaySettings(configuration)
        self.current = Mutex(settings)
        self.upstreams = upstreams
        self.metrics = metrics
        self.ledger = RequestLedger(log: log, metrics: metrics, prices: settings.prices)
        self.authenticator = APIKeyAuthenticator(keys: configuration.auth.keys)
        self.admin = Mutex(AdminAccess(adminKey: configuration.auth.adminKey, metricsRequireAdmin: configuration.auth.metricsRequireAdmin))
        let locals = Dictionary(localModels.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.local = Mutex((locals, inference))
        self.catalog = ModelCatalog(localNames: localModels.map(\.name), router: settings.router, upstreams: upstreams)
        self.policies = PolicyTable(configuration.policies)
        self.routes = Self.routeTable()
    }

    /// The settings in force now. A request reads them once (`GatewayRequest.settings`); this is for work that
    /// belongs to no request.
    public var settings: GatewaySettings { current.withLock { $0 } }
    /// The configuration in force now (routes, keys, prices, limits as last applied).
    public var configuration: GatewayConfiguration { settings.configuration }
    var router: ModelRouter { settings.router }

    /// Serves `configuration`'s routes, upstreams, webhook secret, prices and request limits from now on (a
    /// reload): one swap, so each request sees the old set or the new one, never a mix; requests already running
    /// finish on the set they started with. Then the configured client keys and admin key (`setAuth`). Local
    /// models and policies have their own setters.
    public func apply(_ configuration: GatewayConfiguration) {
        let settings = GatewaySettings(configuration)
        current.withLock { $0 = settings }
        setAuth(configuration.auth)
        ledger.setPrices(settings.prices)
        catalog.setRouter(settings.router)
    }

    /// Every endpoint the gateway answers. Handlers get the gateway passed in, so the table holds no reference
    /// back to it.
    static func routeTable() -> RouteTable {
        var table = RouteTable()
        for endpoint in InferenceEndpoint.allCases {
            table.add(["POST"], endpoint.rawValue, access: .client, logged: true) { $0.serveInference($1, endpoint: endpoint) }
        }
        table.add(["POST"], "/v1/feedback", access: .webhook) { $0.submitFeedback($1) }
        // Other tools' feedback shapes, at their own paths.
        table.add(["POST"], "/feedback", access: .webhook) { $0.submitTensorZeroFeedback($1) }
        table.add(["POST"], "/api/public/scores", access: .webhook) { $0.submitLangfuseScore($1) }
        table.addPrefix(["POST"], "/v1/request/", access: .webhook) { $0.submitHeliconeRating($1) }
        table.add(["GET"], "/v1/models", access: .client) { $0.listModels($1) }
        table.addPrefix(["GET"], "/v1/models/", access: .client) { $0.retrieveModel($1) }
        table.add(["GET", "HEAD"], "/healthz", access: .open) { $1.writer.send(HTTPResponse.json(["status": "ok"], requestID: $1.requestID)) }
        table.add(["GET", "HEAD"], "/health", access: .open) { $1.writer.send(HTTPResponse.json(["status": "ok"], requestID: $1.requestID)) }
        table.add(["GET"], "/metrics", access: .metrics) { $1.writer.send($0.metricsResponse(requestID: $1.requestID)) }
        // The dashboard: its traffic previews are client data. The admin key opens it; without one, loopback peers
        // with a client key when keys exist (see AdminAccess).
        table.add(["GET", "HEAD"], "/", access: .dashboard) { $0.serveDashboardPage($1) }
        table.add(["GET"], "/dashboard/data", access: .dashboard) { $0.serveDashboardData($1) }
        table.add(["GET"], "/dashboard/events", access: .dashboard) { $0.serveDashboardEvents($1) }
        table.add(["GET", "HEAD"], "/login", access: .open) { $0.serveLoginPage($1) }
        table.add(["POST"], "/login", access: .open) { $0.logIn($1) }
        table.add(["POST"], "/logout", access: .open) { $0.logOut($1) }
        table.add(["POST"], "/admin/reload", access: .admin) { $0.reloadConfiguration($1) }
        return table
    }

    /// The local model a request names, with the facade that runs it.
    func localModel(named name: String) -> (LocalModelAdapter, LocalInference?)? {
        local.withLock { l in l.models[name].map { ($0, l.inference) } }
    }

    /// The tokenizer of the local model `name` (text to token ids, as a completions prompt is tokenized), for the
    /// drift watch; nil when no such model is served.
    public func localTokenizer(named name: String) -> (@Sendable (String) -> [Int32])? {
        localModel(named: name)?.0.textPrompt
    }

    /// Whether `target` names a local model or a model a route sends upstream right now.
    func canServe(_ target: String) -> Bool {
        localModel(named: target) != nil || router.route(forModel: target) != nil
    }

    /// The facade running local models now, if any.
    public var inference: LocalInference? { local.withLock { $0.inference } }

    /// Serves `models` (run by `inference`) from now on; requests already answering keep their model.
    public func setLocalModels(_ models: [LocalModelAdapter], inference: LocalInference?) {
        let table = Dictionary(models.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        local.withLock { $0 = (table, inference) }
        catalog.setLocalNames(models.map(\.name))
    }

    /// The traffic policies in force now, by model name.
    public var policiesInForce: [GatewayConfiguration.TrafficPolicy] { policies.all }

    /// Applies `policies` from now on (a reload); requests already dispatched keep their decision.
    public func setPolicies(_ policies: [GatewayConfiguration.TrafficPolicy]) {
        self.policies.replace(policies)
    }

    /// The body limit of a request known from its method and path alone, for the HTTP layer to apply before
    /// reading the body: feedback posts (in every shape) are small.
    public static func bodyLimit(feedbackMaxBytes: Int) -> @Sendable (String, String) -> Int? {
        { _, path in
            let path = normalized(path)
            if path == "/v1/feedback" || path == "/feedback" || path == "/api/public/scores"
                || (path.hasPrefix("/v1/request/") && path.hasSuffix("/feedback")) {
                return feedbackMaxBytes
            }
            return nil
        }
    }

    /// Where `/metrics` reads the number of open client connections.
    public func setConnectionCounter(_ counter: @escaping @Sendable () -> Int) {
        connectionCounter.withLock { $0 = counter }
    }

    /// Where `/metrics` reads the listener's TLS figures; set only when it speaks HTTPS, which also makes the
    /// admin session cookie `Secure` (a browser then never sends it over plain HTTP).
    public func setTLSCounter(_ counter: @escaping @Sendable () -> (sessions: Int, handshakeFailures: Int)) {
        tlsCounter.withLock { $0 = counter }
    }

    /// The admin session cookie's last attribute: `; Secure` when the listener speaks HTTPS.
    var cookieSecurity: String { tlsCounter.withLock { $0 } == nil ? "" : "; Secure" }

    public func respond(to request: HTTPRequest, writer: HTTPResponseWriter) {
        let requestID = RequestID.resolve(clientValue: request.headers["x-request-id"])
        let path = Self.normalized(request.path)
        let endpoint: RouteTable.Endpoint
        var incoming = GatewayRequest(http: request, requestID: requestID, writer: writer, settings: settings)
        switch routes.match(method: request.method, path: path) {
        case .notFound:
            return writer.send(OpenAIError.notFound(path: request.path).response(requestID: requestID))
        case .methodNotAllowed(let allow):
            var response = OpenAIError.methodNotAllowed(request.method, path: request.path).response(requestID: requestID)
            response.headers.add("Allow", allow)
            return writer.send(response)
        case .found(let found, let rest):
            endpoint = found
            incoming.pathRest = rest
        }
        let refusal = checkAccess(endpoint.access, &incoming)
        if let keyID = incoming.clientKeyID, writer.recordsAccess { writer.noteForAccessLog("key_id", keyID) }
        if let refusal {
            if endpoint.access == .dashboard, path == "/", refusal.status == 401, admin.withLock({ $0.isConfigured }) {
                // A browser is sent to the login form (HTTP Basic with the admin key as password works too, for
                // tools and for browsers given the credentials).
                var headers = HTTPHeaders()
                headers.add("Location", "/login")
                headers.add("Cache-Control", "no-store")
                headers.add("x-request-id", requestID)
                return writer.send(HTTPResponse(status: 303, headers: headers))
            }
            if endpoint.logged {
                let context = requestContext(incoming, endpoint: path)
                ledger.begin(context)
                return ledger.reject(context, refusal, writer: writer)
            }
            return writer.send(refusal.response(requestID: requestID))
        }
        endpoint.handler(self, incoming)
    }

    /// The access step: nil when the request may go on (with its key id filled in), else the error to answer.
    private func checkAccess(_ access: EndpointAccess, _ request: inout GatewayRequest) -> OpenAIError? {
        let now = WallClock.unixMillis()
        switch access {
        case .open:
            return nil
        case .metrics:
            let admin = admin.withLock { $0 }
            guard admin.metricsRequireAdmin else { return nil }
            return admin.check(request.http, withCookie: true, nowSeconds: now / 1000) == .allowed ? nil : .adminKeyRequired()
        case .admin:
            switch admin.withLock({ $0 }).check(request.http, withCookie: false, nowSeconds: now / 1000) {
            case .allowed, .unconfigured: return nil
            case .unauthenticated: return .adminKeyRequired()
            case .notLoopback: return .adminOnlyOnLoopback()
            }
        case .dashboard:
            switch admin.withLock({ $0 }).check(request.http, withCookie: true, nowSeconds: now / 1000) {
            case .allowed: return nil
            case .unauthenticated: return .adminKeyRequired()
            case .notLoopback: return .adminOnlyOnLoopback()
            case .unconfigured: return checkAccess(.browser, &request)
            }
        case .webhook where request.settings.signature != nil:
            // Webhooks prove themselves by signing the exact bytes they sent.
            guard let signature = request.settings.signature else { return nil }
            switch signature.verify(header: request.http.headers["x-flywheel-signature"], body: request.http.body,
                                    nowSeconds: WallClock.unixMillis() / 1000) {
            case .valid: return nil
            case .stale:
                return OpenAIError(status: 401, message: "The x-flywheel-signature timestamp is outside the accepted window of \(Int(signature.tolerance)) s; sign the request again with the current time.",
                                   type: "invalid_request_error", code: "signature_expired")
            case .invalid:
                return OpenAIError(status: 401, message: "Missing or invalid x-flywheel-signature: expected sha256=<hex HMAC-SHA256 of the raw body>, or t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">.",
                                   type: "invalid_request_error", code: "invalid_signature")
            }
        case .browser:
            var outcome = authenticator.authenticate(request.http.headers, nowMillis: now)
            if case .rejected = outcome, request.http.headers["Authorization"] == nil {
                outcome = authenticator.authenticate(queryKey: Self.queryValue("key", in: request.http.query), nowMillis: now)
            }
            return accept(outcome, &request)
        case .client, .webhook:
            return accept(authenticator.authenticate(request.http.headers, nowMillis: now), &request)
        }
    }

    /// A client key's outcome: nil (the key noted on the request) or the 401 to answer. A revoked or expired key's
    /// id is noted too, so the log says which key was refused.
    private func accept(_ outcome: APIKeyAuthenticator.Outcome, _ request: inout GatewayRequest) -> OpenAIError? {
        switch outcome {
        case .open: return nil
        case .authenticated(let key):
            request.clientKey = key
            request.clientKeyID = key.id
            return nil
        case .rejected(let refusal):
            request.clientKeyID = refusal.keyID
            return refusal.error
        }
    }

    /// The percent-decoded value of `name` in a query string (`a=1&key=...`), or nil.
    static func queryValue(_ name: String, in query: String?) -> String? {
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, parts[0] == name else { continue }
            return percentDecoded(String(parts[1].map { $0 == "+" ? " " : $0 }))
        }
        return nil
    }

    /// Tolerates one trailing slash, as clients that join base URLs carelessly send it.
    static func normalized(_ path: String) -> String {
        path.utf8.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    func metricsResponse(requestID: String) -> HTTPResponse {
        let connections = connectionCounter.withLock { $0 }?() ?? 0
        let log = ledger.log
        var gauges = GatewayMetrics.Gauges(logQueueDepth: log.queueDepth, logDropped: log.droppedCount,
                                           logWritten: log.writtenCount, logWriteErrors: log.writeErrorCount,
                                           openConnections: connections)
        let health = log.health
        gauges.logHealthy = health.healthy
        gauges.logHeldRows = health.heldRows
        gauges.logStorageErrors = health.storageErrors
        gauges.tls = tlsCounter.withLock { $0 }?()
        if let inference {
            let counts = inference.counts
            gauges.localActive = counts.active
            gauges.localQueued = counts.queued
            gauges.localPromptTokens = counts.promptTokens
            gauges.localGeneratedTokens = counts.generatedTokens
            gauges.localBatching = inference.batching
        }
        let text = metrics.render(gauges)
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        headers.add("x-request-id", requestID)
        return HTTPResponse(status: 200, headers: headers, body: Array(text.utf8))
    }
}
