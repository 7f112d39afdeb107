import Synchronization

/// Request ids that are being answered and not yet logged, so that feedback for a request the client has
/// already seen (its id arrives in the response head, before the row is written) waits for the row instead of
/// getting 404. Thread-safe.
final class InFlightRequests: Sendable {
    /// Most feedback submissions parked at once, waiting for their request to finish.
    static let maxWaiters = 10_000

    private struct Entry {
        var count = 0
        var waiters: [@Sendable () -> Void] = []
    }
    private struct State {
        var entries: [String: Entry] = [:]
        var waiterCount = 0
    }
    private let state = Mutex(State())

    init() {}

    /// A request with `id` started (ids may repeat: a client can resend one).
    func begin(_ id: String) {
        state.withLock { $0.entries[id, default: Entry()].count += 1 }
    }

    /// A request with `id` was logged; runs the waiters once no request with that id is left in flight.
    func end(_ id: String) {
        let ready = state.withLock { s -> [@Sendable () -> Void] in
            guard var entry = s.entries[id] else { return [] }
            entry.count -= 1
            if entry.count > 0 {
                s.entries[id] = entry
                return []
            }
            s.entries[id] = nil
            s.waiterCount -= entry.waiters.count
            return entry.waiters
        }
        for waiter in ready { waiter() }
    }

    enum Wait: Equatable {
        /// Not in flight: the caller goes ahead now (the action was not taken).
        case notInFlight
        /// The action runs once the request is logged.
        case parked
        /// Too many waiters already; the caller should answer 503.
        case full
    }

    /// Runs `action` after the request `id` is logged, when it is in flight now.
    func whenLogged(_ id: String, _ action: @escaping @Sendable () -> Void) -> Wait {
        state.withLock { s -> Wait in
            guard var entry = s.entries[id] else { return .notInFlight }
            guard s.waiterCount < Self.maxWaiters else { return .full }
            entry.waiters.append(action)
            s.entries[id] = entry
            s.waiterCount += 1
            return .parked
        }
    }

    var count: Int { state.withLock { $0.entries.count } }
}
