import Foundation

/// Named counters that threads can wait on: a fake server counts what it saw (`add`), a test waits until a
/// count is reached (`wait`). The way tests synchronise with servers here: on an event, never on a sleep.
/// Thread-safe.
public final class EventCounts: @unchecked Sendable {  // `counts` is only touched with `condition` locked
    private let condition = NSCondition()
    private var counts: [String: Int] = [:]

    public init() {}

    /// Adds `amount` to `key` and wakes the waiters; returns the new count.
    @discardableResult
    public func add(_ key: String, _ amount: Int = 1) -> Int {
        condition.lock()
        defer { condition.unlock() }
        let value = counts[key, default: 0] + amount
        counts[key] = value
        condition.broadcast()
        return value
    }

    public func count(_ key: String) -> Int {
        condition.lock()
        defer { condition.unlock() }
        return counts[key, default: 0]
    }

    /// Blocks until `key` has been counted at least `target` times; returns the count then. The timeout only
    /// keeps a broken test from hanging: a count below `target` means the event never came.
    @discardableResult
    public func wait(_ key: String, atLeast target: Int, timeout: Double = 10) -> Int {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while counts[key, default: 0] < target {
            if !condition.wait(until: deadline) { break }
        }
        return counts[key, default: 0]
    }
}
