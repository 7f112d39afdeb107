import Foundation

/// One change of a traffic policy's split, as stored.
public struct PolicyChange: Sendable, Equatable {
    public var id: Int64
    public var createdAtMillis: Int64
    public var model: String
    /// JSON text `[{"target": ..., "weight": ...}]`: the split from this change on.
    public var variantsJSON: String
    /// JSON text of the split before, when there was one.
    public var previousJSON: String?
    /// `config`, `promote`, `rollback`, `rollout_step` or `rollout_rollback`.
    public var action: String
    public var reason: String?
    public var source: String
    public var evalRun: String?
    public var forced: Bool

    public init(model: String, variantsJSON: String, previousJSON: String?, action: String, reason: String?, source: String,
                evalRun: String? = nil, forced: Bool = false, createdAtMillis: Int64 = 0) {
        self.id = 0
        self.createdAtMillis = createdAtMillis
        self.model = model
        self.variantsJSON = variantsJSON
        self.previousJSON = previousJSON
        self.action = action
        self.reason = reason
        self.source = source
        self.evalRun = evalRun
        self.forced = forced
    }
}

/// Policy changes in the log database: written by `flywheel promote` / `rollback` and by the daemon (its
/// configuration's split, rollout steps), read by both. Thread rule: one thread (not `Sendable`).
public final class SQLitePolicyChangeStore {
    private let connection: SQLiteConnection
    private static let columns = "id, created_at, model, variants, previous, action, reason, source, eval_run, forced"

    /// Opens `path` read-write (creating and migrating it if needed).
    public init(path: String) throws(StoreError) {
        connection = try StoreDatabase.openForWriting(path: path, cacheKiB: 1 << 10)
    }

    deinit { connection.close() }

    /// Stores `change` (its id and, when 0, its time are filled in); returns the stored row.
    @discardableResult
    public func record(_ change: PolicyChange) throws(StoreError) -> PolicyChange {
        var change = change
        if change.createdAtMillis == 0 { change.createdAtMillis = Int64(Date().timeIntervalSince1970 * 1000) }
        let stored = change
        change.id = try translatingSQLiteErrors { () throws(SQLiteError) -> Int64 in
            try connection.withStatement("""
                INSERT INTO policy_changes (created_at, model, variants, previous, action, reason, source, eval_run, forced)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id
                """) { s throws(SQLiteError) -> Int64 in
                try s.bind(stored.createdAtMillis, at: 1)
                try s.bind(stored.model, at: 2)
                try s.bind(stored.variantsJSON, at: 3)
                try s.bind(stored.previousJSON, at: 4)
                try s.bind(stored.action, at: 5)
                try s.bind(stored.reason, at: 6)
                try s.bind(stored.source, at: 7)
                try s.bind(stored.evalRun, at: 8)
                try s.bind(stored.forced, at: 9)
                _ = try s.step()
                return s.int64(0)
            }
        }
        return change
    }

    /// Runs `body` in one write transaction (`BEGIN IMMEDIATE`): what it reads is still the newest when what it
    /// records lands, so two `promote`s at once cannot both build on the same split. Rolled back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try connection.writeTransaction(body)
    }

    /// The newest change of each model: the splits in force.
    public func latestPerModel() throws(StoreError) -> [String: PolicyChange] {
        let rows = try query("SELECT \(Self.columns) FROM policy_changes WHERE id IN (SELECT max(id) FROM policy_changes GROUP BY model)", bind: nil)
        return Dictionary(rows.map { ($0.model, $0) }, uniquingKeysWith: { a, b in a.id > b.id ? a : b })
    }

    /// `model`'s changes, newest first (all models' when nil).
    public func changes(model: String?, limit: Int = 50) throws(StoreError) -> [PolicyChange] {
        if let model {
            return try query("SELECT \(Self.columns) FROM policy_changes WHERE model = ? ORDER BY id DESC LIMIT \(max(1, limit))", bind: model)
        }
        return try query("SELECT \(Self.columns) FROM policy_changes ORDER BY id DESC LIMIT \(max(1, limit))", bind: nil)
    }

    /// The newest change of `model` with `action`.
    public func latest(model: String, action: String) throws(StoreError) -> PolicyChange? {
        try translatingSQLiteErrors { () throws(SQLiteError) -> [PolicyChange] in
            try connection.withStatement("SELECT \(Self.columns) FROM policy_changes WHERE model = ? AND action = ? ORDER BY id DESC LIMIT 1") { s throws(SQLiteError) in
                try s.bind(model, at: 1)
                try s.bind(action, at: 2)
                return try Self.rows(s)
            }
        }.first
    }

    /// The id of the newest change (0 when there is none): the daemon polls it.
    public func maxID() throws(StoreError) -> Int64 {
        try translatingSQLiteErrors { () throws(SQLiteError) in try connection.scalarInt64("SELECT coalesce(max(id), 0) FROM policy_changes") }
    }

    private func query(_ sql: String, bind value: String?) throws(StoreError) -> [PolicyChange] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement(sql) { s throws(SQLiteError) in
                if let value { try s.bind(value, at: 1) }
                return try Self.rows(s)
            }
        }
    }

    private static func rows(_ s: SQLiteStatement) throws(SQLiteError) -> [PolicyChange] {
        var out: [PolicyChange] = []
        while try s.step() {
            var c = PolicyChange(model: s.string(2), variantsJSON: s.string(3), previousJSON: s.optionalString(4), action: s.string(5),
                                 reason: s.optionalString(6), source: s.string(7), evalRun: s.optionalString(8), forced: s.int64(9) != 0,
                                 createdAtMillis: s.int64(1))
            c.id = s.int64(0)
            out.append(c)
        }
        return out
    }
}
