/// The nearest-rank percentile of `values`: the smallest value with at least `fraction` (0...1) of them at or
/// below it; nil when there are none.
public func nearestRankPercentile(_ values: [Double], _ fraction: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    let rank = Int((fraction * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}
