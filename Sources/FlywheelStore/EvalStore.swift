import Foundation

/// One `flywheel eval` run as stored: what was compared and how it ended.
public struct EvalRunRecord: Sendable, Equatable {
    public var id: String
    public var createdAtMillis: Int64
    public var finishedAtMillis: Int64?
    public var dataset: String
    public var candidate: String
    public var baseline: String?
    public var judge: String?
    /// JSON text of the run's options (checks, gates, concurrency...).
    public var optionsJSON: String
    /// `running`, `passed`, `failed` (a gate failed) or `incomplete` (interrupted or errors only).
    public var status: String
    /// JSON text of the summary (counts, rates, intervals, gates), once finished.
    public var summaryJSON: String?

    public init(id: String, createdAtMillis: Int64, dataset: String, candidate: String, baseline: String?, judge: String?,
                optionsJSON: String, status: String = "running") {
        self.id = id
        self.createdAtMillis = createdAtMillis
        self.dataset = dataset
        self.candidate = candidate
        self.baseline = baseline
        self.judge = judge
        self.optionsJSON = optionsJSON
        self.status = status
    }
}

/// Evaluation runs and their items in the log database. The CLI writes them from its own process while the
/// daemon writes requests: WAL and a busy timeout let both. Thread rule: one thread (not `Sendable`).
public final class SQLiteEvalStore {
    private let connection: SQLiteConnection

    /// Opens `path` read-write (creating and migrating it if needed, as the daemon would).
    public init(path: String) throws(StoreError) {
        connection = try StoreDatabase.openForWriting(path: path, cacheKiB: 2 << 10)
    }

    deinit { connection.close() }

    public func createRun(_ run: EvalRunRecord) throws(StoreError) {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("""
                INSERT INTO eval_runs (id, created_at, dataset, candidate, baseline, judge, options, status)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """) { s throws(SQLiteError) in
                try s.bind(run.id, at: 1)
                try s.bind(run.createdAtMillis, at: 2)
                try s.bind(run.dataset, at: 3)
                try s.bind(run.candidate, at: 4)
                try s.bind(run.baseline, at: 5)
                try s.bind(run.judge, at: 6)
                try s.bind(run.optionsJSON, at: 7)
                try s.bind(run.status, at: 8)
                _ = try s.step()
            }
        }
    }

    public func run(id: String) throws(StoreError) -> EvalRunRecord? {
        try runs(where: "id = ?", bind: id, limit: 1).first
    }

    /// The newest runs first; only `candidate`'s when given.
    public func latestRuns(candidate: String? = nil, limit: Int = 20) throws(StoreError) -> [EvalRunRecord] {
        if let candidate { return try runs(where: "candidate = ?", bind: candidate, limit: limit) }
        return try runs(where: "1 = 1", bind: nil, limit: limit)
    }

    private func runs(where clause: String, bind value: String?, limit: Int) throws(StoreError) -> [EvalRunRecord] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("""
                SELECT id, created_at, finished_at, dataset, candidate, baseline, judge, options, status, summary
                FROM eval_runs WHERE \(clause) ORDER BY created_at DESC, id DESC LIMIT ?
                """) { s throws(SQLiteError) in
                var index: Int32 = 1
                if let value { try s.bind(value, at: 1); index = 2 }
                try s.bind(Int64(limit), at: index)
                var out: [EvalRunRecord] = []
                while try s.step() {
                    var r = EvalRunRecord(id: s.string(0), createdAtMillis: s.int64(1), dataset: s.string(3),
                                          candidate: s.string(4), baseline: s.optionalString(5), judge: s.optionalString(6),
                                          optionsJSON: s.string(7), status: s.string(8))
                    r.finishedAtMillis = s.isNull(2) ? nil : s.int64(2)
                    r.summaryJSON = s.optionalString(9)
                    out.append(r)
                }
                return out
            }
        }
    }

    /// Stores (or replaces) one item's result, JSON text.
    public func saveItem(run: String, item: Int, resultJSON: String) throws(StoreError) {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("INSERT OR REPLACE INTO eval_items (run_id, item, result) VALUES (?, ?, ?)") { s throws(SQLiteError) in
                try s.bind(run, at: 1)
                try s.bind(Int64(item), at: 2)
                try s.bind(resultJSON, at: 3)
                _ = try s.step()
            }
        }
    }

    /// Every stored item of `run`, by item number.
    public func items(run: String) throws(StoreError) -> [(item: Int, resultJSON: String)] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("SELECT item, result FROM eval_items WHERE run_id = ? ORDER BY item") { s throws(SQLiteError) in
                try s.bind(run, at: 1)
                var out: [(Int, String)] = []
                while try s.step() { out.append((s.int(0), s.string(1))) }
                return out
            }
        }
    }

    public func finishRun(id: String, status: String, summaryJSON: String, finishedAtMillis: Int64) throws(StoreError) {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("UPDATE eval_runs SET status = ?, summary = ?, finished_at = ? WHERE id = ?") { s throws(SQLiteError) in
                try s.bind(status, at: 1)
                try s.bind(summaryJSON, at: 2)
                try s.bind(finishedAtMillis, at: 3)
                try s.bind(id, at: 4)
                _ = try s.step()
            }
        }
    }
}
