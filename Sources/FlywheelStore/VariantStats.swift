/// One variant's figures over a window of a policy's traffic (client requests only, no shadow runs), for
/// rollout guardrails.
public struct VariantStats: Sendable, Equatable {
    public var requests = 0
    public var errors = 0
    public var p95LatencyMillis: Double?
    /// Feedback verdicts on these requests: accepted, and all of accepted, rejected and edited.
    public var accepted = 0
    public var verdicts = 0

    public init() {}

    public var errorRate: Double? { requests == 0 ? nil : Double(errors) / Double(requests) }
    public var acceptanceRate: Double? { verdicts == 0 ? nil : Double(accepted) / Double(verdicts) }
}

extension SQLiteLogReader {
    /// Each variant's figures for requests of `model` created at or after `since` (unix milliseconds).
    public func variantStats(model: String, since: Int64) throws(StoreError) -> [String: VariantStats] {
        var out: [String: VariantStats] = [:]
        try withConnection { connection throws(SQLiteError) in
            try connection.withStatement("""
                SELECT variant, count(*), sum(CASE WHEN status >= 400 OR error_type IS NOT NULL THEN 1 ELSE 0 END)
                FROM requests WHERE model_requested = ? AND created_at >= ? AND variant IS NOT NULL AND shadow_of IS NULL
                GROUP BY variant
                """) { s throws(SQLiteError) in
                try s.bind(model, at: 1)
                try s.bind(since, at: 2)
                while try s.step() {
                    var v = VariantStats()
                    v.requests = s.int(1)
                    v.errors = s.int(2)
                    out[s.string(0)] = v
                }
            }
            for (variant, stats) in out where stats.requests > 0 {
                let offset = Int64((0.95 * Double(stats.requests)).rounded(.up)) - 1
                out[variant]?.p95LatencyMillis = try connection.withStatement("""
                    SELECT latency_ms FROM requests
                    WHERE model_requested = ? AND variant = ? AND created_at >= ? AND shadow_of IS NULL
                    ORDER BY latency_ms LIMIT 1 OFFSET ?
                    """) { s throws(SQLiteError) -> Double? in
                    try s.bind(model, at: 1)
                    try s.bind(variant, at: 2)
                    try s.bind(since, at: 3)
                    try s.bind(max(0, offset), at: 4)
                    return try s.step() ? s.double(0) : nil
                }
            }
            try connection.withStatement("""
                SELECT r.variant, f.signal, count(*) FROM feedback f JOIN requests r ON r.id = f.request_id
                WHERE r.model_requested = ? AND r.created_at >= ? AND r.variant IS NOT NULL AND r.shadow_of IS NULL
                  AND f.signal IN ('accepted', 'rejected', 'edited')
                GROUP BY r.variant, f.signal
                """) { s throws(SQLiteError) in
                try s.bind(model, at: 1)
                try s.bind(since, at: 2)
                while try s.step() {
                    let variant = s.string(0), count = s.int(2)
                    out[variant, default: VariantStats()].verdicts += count
                    if s.string(1) == "accepted" { out[variant, default: VariantStats()].accepted += count }
                }
            }
        }
        return out
    }
}
