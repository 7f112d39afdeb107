import Synchronization

/// Per-key rate windows and spend, in memory, shared by all event loops. Each limited key has one sliding minute
/// of 60 one-second buckets (requests admitted, tokens of answered requests), so memory is fixed per key, and
/// windows exist only for virtual keys that have limits (the daemon's key watch drops those of vanished keys).
/// Spend starts from the log's sum for the key (set by the key watch) and grows with every answered request.
/// Thread-safe: one lock around small arithmetic.
final class KeyLimiter: Sendable {
    static let windowSeconds: Int64 = 60

    struct Window: Sendable {
        /// The second (monotonic) each bucket counts; a bucket older than the window counts nothing.
        var seconds = [Int64](repeating: Int64.min, count: Int(KeyLimiter.windowSeconds))
        var requests = [Int](repeating: 0, count: Int(KeyLimiter.windowSeconds))
        var tokens = [Int](repeating: 0, count: Int(KeyLimiter.windowSeconds))
        var spentUSD = 0.0

        mutating func bucket(_ now: Int64) -> Int {
            let i = Int(now % KeyLimiter.windowSeconds)
            if seconds[i] != now { seconds[i] = now; requests[i] = 0; tokens[i] = 0 }
            return i
        }

        func live(_ i: Int, _ now: Int64) -> Bool { seconds[i] > now - KeyLimiter.windowSeconds && seconds[i] <= now }

        func sum(_ values: [Int], _ now: Int64) -> Int {
            var total = 0
            for i in 0..<values.count where live(i, now) { total += values[i] }
            return total
        }

        /// Seconds until enough of the oldest buckets leave the window that `values` sums to less than `limit`.
        func secondsUntilBelow(_ limit: Int, _ values: [Int], _ now: Int64) -> Int {
            var total = sum(values, now)
            let order = (0..<values.count).filter { live($0, now) }.sorted { seconds[$0] < seconds[$1] }
            for i in order {
                total -= values[i]
                if total < limit { return Int(max(1, seconds[i] + KeyLimiter.windowSeconds - now)) }
            }
            return 1
        }
    }

    private let windows = Mutex<[String: Window]>([:])

    /// Admits one request of `key` at monotonic second `now` (counting it against its rpm), or returns the 429 to
    /// answer: over requests per minute, over tokens per minute (tokens of requests answered in the last minute),
    /// or its budget spent.
    func admit(_ key: ClientKey, now: Int64) -> OpenAIError? {
        let limits = key.limits
        guard !limits.isEmpty else { return nil }
        return windows.withLock { all -> OpenAIError? in
            var w = all[key.id] ?? Window()
            defer { all[key.id] = w }
            if let budget = limits.budgetUSD, w.spentUSD >= budget {
                var e = OpenAIError(status: 429, message: String(format: "The API key %@ has spent its budget of $%.4f (spent $%.4f). Ask for a new key or a larger budget.", key.id, budget, w.spentUSD),
                                    type: "insufficient_quota", code: "budget_exceeded")
                // The budget does not free up with time: tell SDKs not to retry (an hour for clients that only read retry-after).
                e.headers = ["retry-after": "3600", "x-should-retry": "false"]
                return e
            }
            // Over requests or tokens per minute: wait until enough of the window's oldest seconds leave it.
            func overPerMinute(_ limit: Int?, _ values: [Int], _ unit: String) -> OpenAIError? {
                guard let limit else { return nil }
                let used = w.sum(values, now)
                guard used >= limit else { return nil }
                let wait = w.secondsUntilBelow(limit, values, now)
                var e = OpenAIError(status: 429, message: "Rate limit reached for API key \(key.id) on \(unit) per minute: limit \(limit), used \(used). Try again in \(wait) s.",
                                    type: unit, code: "rate_limit_exceeded")
                e.headers = ["retry-after": "\(wait)"]
                return e
            }
            if let e = overPerMinute(limits.requestsPerMinute, w.requests, "requests") { return e }
            if let e = overPerMinute(limits.tokensPerMinute, w.tokens, "tokens") { return e }
            w.requests[w.bucket(now)] += 1
            return nil
        }
    }

    /// Counts an answered request's tokens and cost against `keyID`, if the key has a window (only limited keys do).
    func record(keyID: String, tokens: Int, costUSD: Double, now: Int64) {
        guard tokens > 0 || costUSD > 0 else { return }
        windows.withLock { all in
            guard var w = all[keyID] else { return }
            w.tokens[w.bucket(now)] += max(0, tokens)
            if costUSD.isFinite, costUSD > 0 { w.spentUSD += costUSD }
            all[keyID] = w
        }
    }

    /// Starts tracking `keyID` with `spentUSD` already spent (the log's sum), unless it is tracked already.
    func track(keyID: String, spentUSD: Double) {
        windows.withLock { all in
            if all[keyID] == nil {
                var w = Window()
                w.spentUSD = spentUSD
                all[keyID] = w
            }
        }
    }

    /// Keeps only the windows of `keyIDs` (keys that still exist and have limits).
    func retain(_ keyIDs: Set<String>) {
        windows.withLock { all in all = all.filter { keyIDs.contains($0.key) } }
    }

    /// What `keyID` has spent as far as this daemon knows (nil when it has no window).
    func spent(keyID: String) -> Double? { windows.withLock { $0[keyID]?.spentUSD } }

    /// Keys with a window now (for tests and bounds).
    var trackedCount: Int { windows.withLock { $0.count } }
}
