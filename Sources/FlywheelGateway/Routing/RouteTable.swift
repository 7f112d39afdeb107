import FlywheelHTTP

/// Who may call an endpoint; checked once, ahead of every handler.
enum EndpointAccess: Sendable {
    /// Anyone (health checks, metrics scrapes).
    case open
    /// A client with a Flywheel key, when keys are configured.
    case client
    /// Feedback: a webhook signature when a secret is configured, else a client key.
    case webhook
    /// A client key, also accepted as `?key=` (a browser's address bar and `EventSource` cannot send headers).
    case browser
    /// The dashboard: the admin key (Bearer, Basic or the login cookie); without an admin key, loopback peers
    /// as `browser`.
    case dashboard
    /// Admin actions (`POST /admin/reload`): the admin key (Bearer or Basic); without one, loopback peers.
    case admin
    /// `/metrics`: open, or the admin key with `auth.metrics_require_admin`.
    case metrics
}

/// `(method, path) → handler`, built once at start. Exact paths, plus prefixes for paths that carry an id
/// (`/v1/models/{id}`). New endpoints (admin, dashboard) are added here without touching a switch.
struct RouteTable: Sendable {
    typealias Handler = @Sendable (Gateway, GatewayRequest) -> Void

    struct Endpoint: Sendable {
        var access: EndpointAccess
        /// Requests refused at the access step are logged (the inference endpoints log every request).
        var logged: Bool
        var handler: Handler
    }

    private var exact: [String: [String: Endpoint]] = [:]
    private var prefixes: [(prefix: String, methods: [String: Endpoint])] = []

    enum Match {
        /// `rest` is what follows a prefix route's prefix (percent-decoding is the handler's business).
        case found(Endpoint, rest: String?)
        case methodNotAllowed(allow: String)
        case notFound
    }

    mutating func add(_ methods: [String], _ path: String, access: EndpointAccess, logged: Bool = false,
                      _ handler: @escaping Handler) {
        for method in methods {
            exact[path, default: [:]][method] = Endpoint(access: access, logged: logged, handler: handler)
        }
    }

    /// A route for every path that starts with `prefix` and has something after it.
    mutating func addPrefix(_ methods: [String], _ prefix: String, access: EndpointAccess, _ handler: @escaping Handler) {
        var table: [String: Endpoint] = [:]
        for method in methods { table[method] = Endpoint(access: access, logged: false, handler: handler) }
        prefixes.append((prefix, table))
    }

    func match(method: String, path: String) -> Match {
        if let methods = exact[path] {
            return methods[method].map { .found($0, rest: nil) } ?? .methodNotAllowed(allow: Self.allow(methods))
        }
        for (prefix, methods) in prefixes where path.hasPrefix(prefix) && path.utf8.count > prefix.utf8.count {
            let rest = String(path.dropFirst(prefix.count))
            return methods[method].map { .found($0, rest: rest) } ?? .methodNotAllowed(allow: Self.allow(methods))
        }
        return .notFound
    }

    private static func allow(_ methods: [String: Endpoint]) -> String {
        methods.keys.sorted().joined(separator: ", ")
    }
}

/// One request on its way to a handler, after the request id and access steps.
struct GatewayRequest: Sendable {
    var http: HTTPRequest
    var requestID: String
    var writer: HTTPResponseWriter
    /// The gateway's settings when the request arrived: it keeps them to its end, even across a reload.
    var settings: GatewaySettings
    /// The Flywheel key's id when keys are configured and the client presented one.
    var clientKeyID: String?
    /// The key itself (limits, models) when the client presented a valid one.
    var clientKey: ClientKey?
    /// For prefix routes: the part of the path after the prefix.
    var pathRest: String?
}
