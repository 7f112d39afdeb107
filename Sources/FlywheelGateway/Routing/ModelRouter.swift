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
                                            total: primary?.totalTimeout ?? 600)
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

/// A model-name glob: `*` matches any run of characters, `?` exactly one (Unicode scalar); everything else
/// literally.
/// Matches on UTF-8 bytes: model names come from clients, and turning a long one into `Character`s on the
/// event loop would cost far more than the name (the request's size is already bounded).
struct ModelPattern: Sendable {
    let text: String
    private let bytes: [UInt8]
    let isExact: Bool

    init(_ text: String) {
        self.text = text
        self.bytes = Array(text.utf8)
        self.isExact = !bytes.contains(UInt8(ascii: "*")) && !bytes.contains(UInt8(ascii: "?"))
    }

    func matches(_ name: String) -> Bool {
        if isExact { return name == text }
        var name = name
        return name.withUTF8 { s in
            // Iterative glob match with backtracking to the last star: O(pattern x name) at worst, no recursion.
            let star = UInt8(ascii: "*"), any = UInt8(ascii: "?")
            var p = 0, i = 0, lastStar = -1, mark = 0
            while i < s.count {
                if p < bytes.count, bytes[p] == any {
                    p += 1; i += 1
                    while i < s.count, s[i] & 0xC0 == 0x80 { i += 1 }  // the rest of a multi-byte scalar
                } else if p < bytes.count, bytes[p] == s[i] {
                    p += 1; i += 1
                } else if p < bytes.count, bytes[p] == star {
                    lastStar = p; mark = i; p += 1
                } else if lastStar >= 0 {
                    p = lastStar + 1; mark += 1; i = mark
                } else {
                    return false
                }
            }
            while p < bytes.count, bytes[p] == star { p += 1 }
            return p == bytes.count
        }
    }
}
