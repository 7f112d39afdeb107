/// The mapping between `FeedbackRecord` and the `feedback` table; `names`, `bind` and `read` agree on order.
enum FeedbackColumns {
    static let names = [
        "request_id", "created_at", "signal", "value", "correction", "comment", "source", "weight",
        "idempotency_key", "episode_id",
    ]

    static let insertSQL =
        "INSERT INTO feedback (\(names.joined(separator: ", "))) VALUES (\(names.map { _ in "?" }.joined(separator: ", ")))"

    /// `row_id` followed by `names`, for SELECTs whose rows `read` decodes.
    static let selectList = "row_id, " + names.joined(separator: ", ")

    static func bind(_ f: FeedbackRecord, to s: SQLiteStatement) throws(SQLiteError) {
        try s.bind(f.requestID, at: 1)
        try s.bind(f.createdAtMillis, at: 2)
        try s.bind(f.signal.rawValue, at: 3)
        try s.bind(f.value, at: 4)
        try s.bind(f.correction, at: 5)
        try s.bind(f.comment, at: 6)
        try s.bind(f.source, at: 7)
        try s.bind(f.weight, at: 8)
        try s.bind(f.idempotencyKey, at: 9)
        try s.bind(f.episodeID, at: 10)
    }

    /// Decodes the current row of a statement that selected `selectList`. A signal this build does not
    /// know is an error rather than a silent guess.
    static func read(_ s: SQLiteStatement) throws(SQLiteError) -> StoredFeedback {
        let rawSignal = s.string(3)
        guard let signal = FeedbackSignal(rawValue: rawSignal) else {
            throw SQLiteError(code: 20 /* SQLITE_MISMATCH */, message: "unknown feedback signal '\(rawSignal)'", sql: s.sql)
        }
        var f = FeedbackRecord(requestID: s.string(1), createdAtMillis: s.int64(2), signal: signal)
        f.id = s.int64(0)
        f.value = s.optionalDouble(4)
        f.correction = s.optionalString(5)
        f.comment = s.optionalString(6)
        f.source = s.optionalString(7)
        f.weight = s.optionalDouble(8)
        f.idempotencyKey = s.optionalString(9)
        f.episodeID = s.optionalString(10)
        return StoredFeedback(rowID: f.id, record: f)
    }
}
