/// The SQL conditions for a `RequestFilter` and the code that binds their parameters, in one place so
/// the two cannot disagree. The SQL text depends only on which fields are set, so the statement cache
/// stays small.
struct RequestConditions {
    /// Empty when nothing filters, else " WHERE ..." (with a leading space).
    let whereClause: String
    private let filter: RequestFilter

    /// `extra` conditions come first in the clause; the caller binds their parameters before calling
    /// `bind(_:from:)` with the next free index.
    init(_ filter: RequestFilter, extra: [String] = []) {
        self.filter = filter
        var clauses = extra
        // The unary `+` keeps the planner from answering this OR from the two model indexes and sorting all of the
        // model's rows: paged queries walk `row_id` or `(created_at, id)` and stop early. The newest page of a model
        // uses the indexes its own way (`SQLiteLogReader.latestRequests`).
        if filter.model != nil { clauses.append("(+model_requested = ? OR +model_served = ?)") }
        if filter.route != nil { clauses.append("route = ?") }
        // Tags are a JSON array per row; a tag match is a scan of the rows the other conditions leave,
        // which keeps the write path at one row per request (no tag table to maintain).
        if filter.tag != nil { clauses.append("EXISTS (SELECT 1 FROM json_each(requests.tags) WHERE json_each.value = ?)") }
        if !filter.excludedTags.isEmpty {
            let marks = Array(repeating: "?", count: filter.excludedTags.count).joined(separator: ", ")
            clauses.append("NOT EXISTS (SELECT 1 FROM json_each(requests.tags) WHERE json_each.value IN (\(marks)))")
        }
        if filter.status != nil { clauses.append("status = ?") }
        if filter.errorsOnly { clauses.append("(status >= 400 OR error_type IS NOT NULL)") }
        if filter.createdFrom != nil { clauses.append("created_at >= ?") }
        if filter.createdBefore != nil { clauses.append("created_at < ?") }
        if filter.episode != nil { clauses.append("episode_id = ?") }
        if filter.variant != nil { clauses.append("variant = ?") }
        if filter.clientKey != nil { clauses.append("client_key_id = ?") }
        if let shadows = filter.shadows { clauses.append(shadows ? "shadow_of IS NOT NULL" : "shadow_of IS NULL") }
        self.whereClause = clauses.isEmpty ? "" : " WHERE " + clauses.joined(separator: " AND ")
    }

    /// Binds the filter's parameters from index `start`; returns the next free index.
    func bind(_ s: SQLiteStatement, from start: Int32) throws(SQLiteError) -> Int32 {
        var index = start
        func next<T>(_ value: T?, _ bind: (T, Int32) throws(SQLiteError) -> Void) throws(SQLiteError) {
            guard let value else { return }
            try bind(value, index)
            index += 1
        }
        if let model = filter.model {
            try s.bind(model, at: index)
            try s.bind(model, at: index + 1)
            index += 2
        }
        try next(filter.route) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.tag) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        for tag in filter.excludedTags {
            try s.bind(tag, at: index)
            index += 1
        }
        try next(filter.status) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.createdFrom) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.createdBefore) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.episode) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.variant) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        try next(filter.clientKey) { v, i throws(SQLiteError) in try s.bind(v, at: i) }
        return index
    }
}
