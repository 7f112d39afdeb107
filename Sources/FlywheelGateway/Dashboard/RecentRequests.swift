import FlywheelJSON
import Synchronization

/// The last requests the ledger finished, for the dashboard's live tail: a fixed ring of short summaries (no
/// bodies), so memory is bounded and a request costs one short lock.
final class RecentRequests: Sendable {
    struct Entry: Sendable {
        var at: Int64
        var id: String
        var model: String
        var route: String
        var variant: String?
        var status: Int
        var latencyMillis: Double
        var tokens: Int
        var costUSD: Double?
    }

    static let capacity = 200
    private let ring = Mutex<(entries: [Entry], next: Int, total: UInt64)>(([], 0, 0))

    func add(_ entry: Entry) {
        ring.withLock { r in
            if r.entries.count < Self.capacity { r.entries.append(entry) } else { r.entries[r.next] = entry }
            r.next = (r.next + 1) % Self.capacity
            r.total += 1
        }
    }

    /// The newest `limit` entries, newest first, and how many requests finished in all.
    func latest(_ limit: Int) -> ([Entry], UInt64) {
        ring.withLock { r in
            let ordered = r.entries.count < Self.capacity ? r.entries : Array(r.entries[r.next...] + r.entries[..<r.next])
            return (Array(ordered.suffix(limit).reversed()), r.total)
        }
    }
}
