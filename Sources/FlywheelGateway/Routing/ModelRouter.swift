import FlywheelConfig
import FlywheelUpstream

/// Where one request goes: the upstreams to try in order and the model name to send them.
public struct ResolvedRoute: Sendable {
    /// The name logged in the `route` column.
    public var name: String
    public var endpoints: [UpstreamEndpoint]
    /// Replaces the request's `model` upstream when set.
    public var upstreamModel: String?
    public var timeouts: UpstreamTimeouts
    public var retry: RetryPolicy
}

/// Maps a requested model name to a route. Routes are tried in configuration order; the first match wins.
/// Immutable after construction, so safe to share across threads.
public struct ModelRouter: Sendable {
    struct Entry: Sendable {
        var pattern: ModelPattern
        var route: ResolvedRoute
    }
    let entries: [Entry]

    public init(configuration: GatewayConfiguration) {
        var byName: [String: GatewayConfiguration.Upstream] = [:]
        for u in configuration.upstreams { byName[u.name] = u }
        entries = configuration.routes.map { r in
            let ups = r.upstreams.compactMap { byName[$0] }
            // Timeouts and retries come from the primary upstream; fallbacks share them.
            let primary = ups.first
            let endpoints = ups.map { u in
                UpstreamEndpoint(name: u.name, baseURL: u.baseURL, apiKey: u.apiKey,
                                 headers: u.headers.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
            }
            let timeouts = UpstreamTimeouts(connect: primary?.connectTimeout ?? 10,
                                            firstByte: primary?.firstByteTimeout ?? 120,
                                            total: primary?.totalTimeout ?? 600,
                                            idle: primary?.idleTimeout ?? 300)
            var retry = RetryPolicy()
            retry.maxRetries = primary?.maxRetries ?? retry.maxRetries
            retry.initialBackoff = primary?.initialBackoff ?? retry.initialBackoff
            retry.maxBackoff = primary?.maxBackoff ?? retry.maxBackoff
            return Entry(pattern: ModelPattern(r.model),
                         route: ResolvedRoute(name: r.name ?? "upstream", endpoints: endpoints,
                                              upstreamModel: r.upstreamModel, timeouts: timeouts, retry: retry))
        }
    }

    /// The route for `model`, or nil when no route matches (the caller answers 404 `model_not_found`).
    public func route(forModel model: String) -> ResolvedRoute? {
        entries.first { $0.pattern.matches(model) }?.route
    }

    /// The position of the route `model` takes (first match), or nil.
    func entryIndex(forModel model: String) -> Int? {
        entries.firstIndex { $0.pattern.matches(model) }
    }

    /// Routes with wildcards, by position: their upstreams list the models they serve.
    var wildcardRoutes: [(index: Int, route: ResolvedRoute)] {
        entries.indices.filter { !entries[$0].pattern.isExact }.map { ($0, entries[$0].route) }
    }

    /// Model names routed exactly (no wildcards), for `GET /v1/models`.
    public var exactModelNames: [String] {
        entries.compactMap { $0.pattern.isExact ? $0.pattern.text : nil }
    }

    /// The first wildcard route that matches everything, if any (its upstream can list models itself).
    public var catchAll: ResolvedRoute? {
        entries.first { $0.pattern.text == "*" }?.route
    }
}
