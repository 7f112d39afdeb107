/// The mapping between `RequestRecord` and the `requests` table. `names`, `bind` and `read` list the
/// columns in the same order; keep them in step when the schema changes.
enum RequestColumns {
    static let names = [
        "id", "created_at", "method", "endpoint", "client_key_id", "tags", "user", "metadata",
        "model_requested", "model_served", "route", "upstream", "stream", "status", "error_type",
        "error_message", "request_json", "response_json", "latency_ms", "ttft_ms", "upstream_ms",
        "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd", "attempts", "response_truncated",
        "incomplete", "episode_id", "variant", "decision", "shadow_of", "content_withheld",
    ]

    static let insertSQL =
        "INSERT INTO requests (\(names.joined(separator: ", "))) VALUES (\(names.map { _ in "?" }.joined(separator: ", ")))"

    /// `row_id` followed by `names`, for SELECTs whose rows `read` decodes.
    static let selectList = "row_id, " + names.joined(separator: ", ")

    /// Binds `record` to the parameters of `insertSQL`, using `id` in place of `record.id`.
    static func bind(_ record: RequestRecord, id: String, to s: SQLiteStatement) throws(SQLiteError) {
        try s.bind(id, at: 1)
        try s.bind(record.createdAtMillis, at: 2)
        try s.bind(record.method, at: 3)
        try s.bind(record.endpoint, at: 4)
        try s.bind(record.clientKeyID, at: 5)
        try s.bind(TagsJSON.encode(record.tags), at: 6)
        try s.bind(record.user, at: 7)
        try s.bind(record.metadataJSON, at: 8)
        try s.bind(record.modelRequested, at: 9)
        try s.bind(record.modelServed, at: 10)
        try s.bind(record.route, at: 11)
        try s.bind(record.upstream, at: 12)
        try s.bind(record.stream, at: 13)
        try s.bind(record.status, at: 14)
        try s.bind(record.errorType, at: 15)
        try s.bind(record.errorMessage, at: 16)
        try s.bind(record.requestJSON, at: 17)
        try s.bind(record.responseJSON, at: 18)
        try s.bind(record.latencyMillis, at: 19)
        try s.bind(record.timeToFirstTokenMillis, at: 20)
        try s.bind(record.upstreamMillis, at: 21)
        try s.bind(record.promptTokens, at: 22)
        try s.bind(record.completionTokens, at: 23)
        try s.bind(record.totalTokens, at: 24)
        try s.bind(record.costUSD, at: 25)
        try s.bind(record.attempts, at: 26)
        try s.bind(record.responseTruncated, at: 27)
        try s.bind(record.incomplete, at: 28)
        try s.bind(record.episodeID, at: 29)
        try s.bind(record.variant, at: 30)
        try s.bind(record.decisionJSON, at: 31)
        try s.bind(record.shadowOf, at: 32)
        try s.bind(record.contentWithheld, at: 33)
    }

    /// Decodes the current row of a statement that selected `selectList`.
    static func read(_ s: SQLiteStatement) -> StoredRequest {
        var r = RequestRecord(id: s.string(1), createdAtMillis: s.int64(2), method: s.string(3),
                              endpoint: s.string(4), requestJSON: s.string(17), status: s.int(14),
                              latencyMillis: s.double(19))
        r.clientKeyID = s.optionalString(5)
        r.tags = TagsJSON.decode(s.string(6))
        r.user = s.optionalString(7)
        r.metadataJSON = s.optionalString(8)
        r.modelRequested = s.optionalString(9)
        r.modelServed = s.optionalString(10)
        r.route = s.optionalString(11)
        r.upstream = s.optionalString(12)
        r.stream = s.int64(13) != 0
        r.errorType = s.optionalString(15)
        r.errorMessage = s.optionalString(16)
        r.responseJSON = s.optionalString(18)
        r.timeToFirstTokenMillis = s.optionalDouble(20)
        r.upstreamMillis = s.optionalDouble(21)
        r.promptTokens = s.optionalInt(22)
        r.completionTokens = s.optionalInt(23)
        r.totalTokens = s.optionalInt(24)
        r.costUSD = s.optionalDouble(25)
        r.attempts = s.int(26)
        r.responseTruncated = s.int64(27) != 0
        r.incomplete = s.int64(28) != 0
        r.episodeID = s.optionalString(29)
        r.variant = s.optionalString(30)
        r.decisionJSON = s.optionalString(31)
        r.shadowOf = s.optionalString(32)
        r.contentWithheld = s.int64(33) != 0
        return StoredRequest(rowID: s.int64(0), record: r)
    }
}
