import Foundation

/// A virtual API key as stored: never the secret, only its salt and salted SHA-256 (hex), and the limits.
public struct StoredAPIKey: Sendable, Equatable {
    /// The public part of the key (`fw_<id>_<secret>`).
    public var id: String
    public var name: String
    public var saltHex: String
    public var hashHex: String
    /// Model globs the key may use; nil: any model.
    public var models: [String]?
    public var requestsPerMinute: Int?
    public var tokensPerMinute: Int?
    public var budgetUSD: Double?
    public var expiresAtMillis: Int64?
    public var createdAtMillis: Int64
    public var revokedAtMillis: Int64?

    public init(id: String, name: String, saltHex: String, hashHex: String, models: [String]? = nil,
                requestsPerMinute: Int? = nil, tokensPerMinute: Int? = nil, budgetUSD: Double? = nil,
                expiresAtMillis: Int64? = nil, createdAtMillis: Int64 = 0, revokedAtMillis: Int64? = nil) {
        self.id = id
        self.name = name
        self.saltHex = saltHex
        self.hashHex = hashHex
        self.models = models
        self.requestsPerMinute = requestsPerMinute
        self.tokensPerMinute = tokensPerMinute
        self.budgetUSD = budgetUSD
        self.expiresAtMillis = expiresAtMillis
        self.createdAtMillis = createdAtMillis
        self.revokedAtMillis = revokedAtMillis
    }
}

/// What one key was used for, summed from the log.
public struct APIKeyUsage: Sendable, Equatable {
    public var requests: Int
    public var totalTokens: Int
    public var costUSD: Double

    public init(requests: Int, totalTokens: Int, costUSD: Double) {
        self.requests = requests
        self.totalTokens = totalTokens
        self.costUSD = costUSD
    }
}

/// Why a key could not be created or revoked; the message is for the operator.
public struct APIKeyStoreError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Virtual API keys in the log database: written by `flywheel keys`, read by the daemon (which polls `changeMarker`
/// and reloads the table when it moved). Thread rule: one thread at a time (not `Sendable`).
public final class SQLiteAPIKeyStore {
    private let connection: SQLiteConnection
    private static let columns = "id, name, salt, hash, models, rpm, tpm, budget_usd, expires_at, created_at, revoked_at"

    /// Opens `path` read-write (creating and migrating it if needed).
    public init(path: String) throws(StoreError) {
        connection = try StoreDatabase.openForWriting(path: path, cacheKiB: 1 << 10)
    }

    deinit { connection.close() }

    /// Stores a new key. A name already used by a key that is not revoked is refused (two live keys of one name
    /// would be told apart by id alone in every report), as is an id already taken.
    public func create(_ key: StoredAPIKey, source: String) throws {
        try transaction {
            let taken = try translatingSQLiteErrors { () throws(SQLiteError) -> String? in
                try connection.withStatement("SELECT id FROM api_keys WHERE name = ? AND revoked_at IS NULL LIMIT 1") { s throws(SQLiteError) in
                    try s.bind(key.name, at: 1)
                    return try s.step() ? s.string(0) : nil
                }
            }
            if let taken { throw APIKeyStoreError("a key named this already exists (id \(taken)); revoke it first or choose another name") }
            let exists = try translatingSQLiteErrors { () throws(SQLiteError) -> Bool in
                try connection.withStatement("SELECT 1 FROM api_keys WHERE id = ?") { s throws(SQLiteError) in
                    try s.bind(key.id, at: 1)
                    return try s.step()
                }
            }
            if exists { throw APIKeyStoreError("the key id \(key.id) is taken") }
            try translatingSQLiteErrors { () throws(SQLiteError) in
                try connection.withStatement("INSERT INTO api_keys (\(Self.columns)) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)") { s throws(SQLiteError) in
                    try s.bind(key.id, at: 1)
                    try s.bind(key.name, at: 2)
                    try s.bind(key.saltHex, at: 3)
                    try s.bind(key.hashHex, at: 4)
                    try s.bind(key.models.map(TagsJSON.encode), at: 5)
                    try s.bind(key.requestsPerMinute, at: 6)
                    try s.bind(key.tokensPerMinute, at: 7)
                    try s.bind(key.budgetUSD, at: 8)
                    try s.bind(key.expiresAtMillis, at: 9)
                    try s.bind(key.createdAtMillis, at: 10)
                    try s.bind(key.revokedAtMillis, at: 11)
                    _ = try s.step()
                }
            }
            try recordChange(keyID: key.id, action: "create", source: source, at: key.createdAtMillis)
        }
    }

    /// Marks the key revoked at `atMillis`. Returns the key as it was; throws when there is no such key or it
    /// was revoked already.
    @discardableResult
    public func revoke(id: String, atMillis: Int64, source: String) throws -> StoredAPIKey {
        try transaction {
            guard let key = try all().first(where: { $0.id == id }) else { throw APIKeyStoreError("no key with id \(id)") }
            if key.revokedAtMillis != nil { throw APIKeyStoreError("the key \(id) is revoked already") }
            try translatingSQLiteErrors { () throws(SQLiteError) in
                try connection.withStatement("UPDATE api_keys SET revoked_at = ? WHERE id = ?") { s throws(SQLiteError) in
                    try s.bind(atMillis, at: 1)
                    try s.bind(id, at: 2)
                    _ = try s.step()
                }
            }
            try recordChange(keyID: id, action: "revoke", source: source, at: atMillis)
            return key
        }
    }

    /// Every key, revoked ones included, oldest first.
    public func all() throws(StoreError) -> [StoredAPIKey] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("SELECT \(Self.columns) FROM api_keys ORDER BY created_at, id") { s throws(SQLiteError) in
                var out: [StoredAPIKey] = []
                while try s.step() {
                    out.append(StoredAPIKey(id: s.string(0), name: s.string(1), saltHex: s.string(2), hashHex: s.string(3),
                                            models: s.optionalString(4).map(TagsJSON.decode), requestsPerMinute: s.optionalInt(5),
                                            tokensPerMinute: s.optionalInt(6), budgetUSD: s.optionalDouble(7),
                                            expiresAtMillis: s.isNull(8) ? nil : s.int64(8), createdAtMillis: s.int64(9),
                                            revokedAtMillis: s.isNull(10) ? nil : s.int64(10)))
                }
                return out
            }
        }
    }

    /// The newest change's id (0 when none): it moves with every create and revoke, so polling it is one cheap read.
    public func changeMarker() throws(StoreError) -> Int64 {
        try translatingSQLiteErrors { () throws(SQLiteError) in try connection.scalarInt64("SELECT coalesce(max(id), 0) FROM api_key_changes") }
    }

    /// Requests, tokens and spend per key id over the key's life: the log's rows plus what retention pruned of
    /// them (shadow runs, which no client asked for, left out).
    public func usage() throws(StoreError) -> [String: APIKeyUsage] {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("""
                SELECT key_id, sum(n), sum(tokens), sum(cost) FROM (
                    SELECT client_key_id AS key_id, count(*) AS n, coalesce(sum(total_tokens), 0) AS tokens,
                           coalesce(sum(cost_usd), 0) AS cost
                    FROM requests WHERE client_key_id IS NOT NULL AND shadow_of IS NULL GROUP BY client_key_id
                    UNION ALL
                    SELECT key_id, requests, total_tokens, cost_usd FROM key_pruned_usage)
                GROUP BY key_id
                """) { s throws(SQLiteError) in
                var out: [String: APIKeyUsage] = [:]
                while try s.step() { out[s.string(0)] = APIKeyUsage(requests: s.int(1), totalTokens: s.int(2), costUSD: s.double(3)) }
                return out
            }
        }
    }

    /// The spend of `id` over its life (shadow runs left out): its logged rows plus what retention pruned of them.
    /// The daemon's starting point for its budget.
    public func spend(keyID id: String) throws(StoreError) -> Double {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("""
                SELECT (SELECT coalesce(sum(cost_usd), 0) FROM requests WHERE client_key_id = ?1 AND shadow_of IS NULL)
                     + (SELECT coalesce(sum(cost_usd), 0) FROM key_pruned_usage WHERE key_id = ?1)
                """) { s throws(SQLiteError) in
                try s.bind(id, at: 1)
                return try s.step() ? s.double(0) : 0
            }
        }
    }

    private func recordChange(keyID: String, action: String, source: String, at millis: Int64) throws(StoreError) {
        try translatingSQLiteErrors { () throws(SQLiteError) in
            try connection.withStatement("INSERT INTO api_key_changes (created_at, key_id, action, source) VALUES (?, ?, ?, ?)") { s throws(SQLiteError) in
                try s.bind(millis, at: 1)
                try s.bind(keyID, at: 2)
                try s.bind(action, at: 3)
                try s.bind(source, at: 4)
                _ = try s.step()
            }
        }
    }

    private func transaction<T>(_ body: () throws -> T) throws -> T {
        try connection.writeTransaction(body)
    }
}
