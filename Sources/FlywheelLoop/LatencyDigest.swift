import Foundation

/// Percentiles of a stream of positive values in constant memory: values fall into buckets whose bounds grow
/// by 2% each, so any percentile is known to within 2% whatever the number of values (a million latencies
/// cost the same few KB as ten).
public struct LatencyDigest: Sendable, Equatable {
    private static let growth = 1.02
    private static let logGrowth = log(growth)
    /// Values at or below this land in bucket 0 (0.01 ms is far below any request's latency).
    private static let floor = 0.01
    private var buckets: [Int: Int] = [:]
    public private(set) var count = 0
    public private(set) var maximum = 0.0

    public init() {}

    public mutating func add(_ value: Double) {
        guard value.isFinite, value >= 0 else { return }
        let index = value <= Self.floor ? 0 : Int((log(value / Self.floor) / Self.logGrowth).rounded(.up))
        buckets[index, default: 0] += 1
        count += 1
        maximum = max(maximum, value)
    }

    /// The value below which `fraction` (0...1) of the values lie, within 2%; nil when empty.
    public func percentile(_ fraction: Double) -> Double? {
        guard count > 0 else { return nil }
        let rank = max(1, Int((fraction * Double(count)).rounded(.up)))
        var seen = 0
        for index in buckets.keys.sorted() {
            seen += buckets[index]!
            if seen >= rank {
                let upper = index == 0 ? Self.floor : Self.floor * pow(Self.growth, Double(index))
                return min(upper, maximum)
            }
        }
        return maximum
    }
}
