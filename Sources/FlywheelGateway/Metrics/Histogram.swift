import Synchronization

/// A Prometheus histogram with fixed buckets. Thread-safe; observing takes one short lock.
public final class Histogram: Sendable {
    /// Upper bounds in seconds, ascending; `+Inf` is implicit.
    public let bounds: [Double]
    private struct Counts {
        var buckets: [UInt64]
        var sum: Double = 0
        var count: UInt64 = 0
    }
    private let counts: Mutex<Counts>

    public init(bounds: [Double]) {
        self.bounds = bounds
        self.counts = Mutex(Counts(buckets: [UInt64](repeating: 0, count: bounds.count)))
    }

    public func observe(_ seconds: Double) {
        // Binary search for the first bound >= value; values above every bound only count toward +Inf.
        var lo = 0, hi = bounds.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if bounds[mid] < seconds { lo = mid + 1 } else { hi = mid }
        }
        counts.withLock { c in
            if lo < c.buckets.count { c.buckets[lo] += 1 }
            c.sum += seconds
            c.count += 1
        }
    }

    public var count: UInt64 { counts.withLock { $0.count } }

    /// Appends the `_bucket`, `_sum` and `_count` lines; `labels` is either empty or `key="value",...`.
    func render(name: String, labels: String, into out: inout String) {
        let snapshot = counts.withLock { $0 }
        let sep = labels.isEmpty ? "" : ","
        var cumulative: UInt64 = 0
        for (i, bound) in bounds.enumerated() {
            cumulative += snapshot.buckets[i]
            out += "\(name)_bucket{\(labels)\(sep)le=\"\(formatBound(bound))\"} \(cumulative)\n"
        }
        out += "\(name)_bucket{\(labels)\(sep)le=\"+Inf\"} \(snapshot.count)\n"
        let braces = labels.isEmpty ? "" : "{\(labels)}"
        out += "\(name)_sum\(braces) \(snapshot.sum)\n"
        out += "\(name)_count\(braces) \(snapshot.count)\n"
    }

    private func formatBound(_ b: Double) -> String {
        b == b.rounded() && b < 1e9 ? String(Int(b)) : String(b)
    }
}
