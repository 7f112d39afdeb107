import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import FlywheelUpstream
import Synchronization

/// What `GET /v1/models` lists: the local models, the names routed exactly, and for each wildcard route the
/// models its upstream lists that the route would take (first match wins, as for requests). Upstream lists
/// are fetched with a short timeout and cached; concurrent callers share one fetch; a failed fetch keeps the
/// last good list. Thread-safe.
final class ModelCatalog: Sendable {
    /// Seconds an upstream's list is reused before it is fetched again.
    static let cacheSeconds = 60.0
    /// Seconds an upstream gets to answer before the list is served without it.
    static let fetchSeconds = 5.0

    private let localNames: Mutex<[String]>
    /// The routes in force, and how many reloads replaced them (a fetch for older routes is not cached).
    private let current: Mutex<(router: ModelRouter, generation: Int)>
    private let upstreams: UpstreamPool

    private struct Cached {
        var models: [JSON] = []
        var fetchedAtNanos: UInt64?
        var waiters: [@Sendable (Bool) -> Void]?
    }
    private let cache = Mutex<[Int: Cached]>([:])

    init(localNames: [String], router: ModelRouter, upstreams: UpstreamPool) {
        self.localNames = Mutex(localNames)
        self.current = Mutex((router, 0))
        self.upstreams = upstreams
    }

    /// The merged list; `complete` is false when an upstream's list could not be had (and none was cached).
    func list(loop: HTTPEventLoop, _ completion: @escaping @Sendable (_ models: [JSON], _ complete: Bool) -> Void) {
        let (router, generation) = current.withLock { $0 }
        let wildcards = router.wildcardRoutes
        guard !wildcards.isEmpty else { return completion(merged(router), true) }
        let remaining = Atomic<Int>(wildcards.count)
        let complete = Atomic<Bool>(true)
        for (index, route) in wildcards {
            refresh(index: index, route: route, generation: generation, loop: loop) { [self] ok in
                if !ok { complete.store(false, ordering: .relaxed) }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    completion(merged(router), complete.load(ordering: .relaxed))
                }
            }
        }
    }

    private func refresh(index: Int, route: ResolvedRoute, generation: Int, loop: HTTPEventLoop, _ done: @escaping @Sendable (Bool) -> Void) {
        let now = MonotonicClock.now()
        enum Step { case fresh, wait, fetch }
        let step = cache.withLock { table -> Step in
            var entry = table[index] ?? Cached()
            if let at = entry.fetchedAtNanos, Double(now &- at) / 1e9 < Self.cacheSeconds { return .fresh }
            if entry.waiters != nil {
                entry.waiters!.append(done)
                table[index] = entry
                return .wait
            }
            entry.waiters = [done]
            table[index] = entry
            return .fetch
        }
        switch step {
        case .fresh: return done(true)
        case .wait: return
        case .fetch: break
        }
        let timeouts = UpstreamTimeouts(connect: min(route.timeouts.connect, Self.fetchSeconds), firstByte: Self.fetchSeconds,
                                        total: Self.fetchSeconds)
        let request = UpstreamRequest(method: "GET", path: "/models", headers: [("Accept", "application/json")],
                                      endpoints: route.endpoints, timeouts: timeouts, retry: RetryPolicy(maxRetries: 0))
        UpstreamFetch.start(request, client: upstreams.client(for: loop)) { [self] result in
            var models: [JSON]?
            if case .success(let response) = result, response.status == 200,
               let data = (try? JSONParser.parse(response.body))?["data"]?.arrayValue {
                models = data.filter { $0["id"]?.stringValue != nil }
            }
            let stale = current.withLock { $0.generation != generation }
            let waiters = cache.withLock { table -> [@Sendable (Bool) -> Void] in
                var entry = table[index] ?? Cached()
                if let models, !stale {
                    entry.models = models
                    entry.fetchedAtNanos = MonotonicClock.now()
                }
                let waiting = entry.waiters ?? []
                entry.waiters = nil
                table[index] = entry
                return waiting
            }
            // A failed fetch still counts as complete when an earlier list is cached.
            let ok = models != nil || cache.withLock { $0[index]?.fetchedAtNanos != nil }
            for waiter in waiters { waiter(ok) }
        }
    }

    /// Local models first, then exact routes, then what upstreams list, each id once.
    private func merged(_ router: ModelRouter) -> [JSON] {
        var seen = Set<String>()
        var out: [JSON] = []
        for name in localNames.withLock({ $0 }).sorted() where seen.insert(name).inserted {
            out.append(Self.card(name, ownedBy: "flywheel-local"))
        }
        for name in router.exactModelNames where seen.insert(name).inserted {
            out.append(Self.card(name, ownedBy: "flywheel"))
        }
        let lists = cache.withLock { table in router.wildcardRoutes.map { table[$0.index]?.models ?? [] } }
        for (position, (index, _)) in router.wildcardRoutes.enumerated() {
            for model in lists[position] {
                guard let id = model["id"]?.stringValue, router.entryIndex(forModel: id) == index,
                      seen.insert(id).inserted else { continue }
                out.append(model)
            }
        }
        return out
    }

    /// The routes changed (a reload): the cached upstream lists belong to the old routes' positions.
    func setRouter(_ router: ModelRouter) {
        current.withLock { $0 = (router, $0.generation + 1) }
        // Forget the lists, but keep the waiters of a fetch in progress: it still answers them.
        cache.withLock { table in
            for index in table.keys {
                table[index]!.models = []
                table[index]!.fetchedAtNanos = nil
            }
        }
    }

    /// The local models changed (a reload).
    func setLocalNames(_ names: [String]) { localNames.withLock { $0 = names } }

    static func card(_ id: String, ownedBy: String) -> JSON {
        ["id": .string(id), "object": "model", "created": 0, "owned_by": .string(ownedBy)]
    }
}
