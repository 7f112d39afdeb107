/// The log's schema history and the code that applies it.
///
/// The version lives in `PRAGMA user_version`. `migrations` is ordered; migration `n` (1-based) takes the
/// database from version `n - 1` to `n`, in its own transaction. A new version is one more entry.
public enum LogSchema {
    /// The newest schema version this build reads and writes.
    public static let currentVersion: Int = migrations.count

    static let migrations: [Migration] = [
        Migration(version: 1, summary: "requests and feedback tables", sql: """
            CREATE TABLE requests (
                row_id            INTEGER PRIMARY KEY,
                id                TEXT    NOT NULL UNIQUE,
                created_at        INTEGER NOT NULL,          -- unix milliseconds
                method            TEXT    NOT NULL,
                endpoint          TEXT    NOT NULL,
                client_key_id     TEXT,
                tags              TEXT    NOT NULL DEFAULT '[]', -- JSON array of strings
                user              TEXT,
                metadata          TEXT,                      -- JSON object text
                model_requested   TEXT,
                model_served      TEXT,
                route             TEXT,
                upstream          TEXT,
                stream            INTEGER NOT NULL DEFAULT 0,
                status            INTEGER NOT NULL,
                error_type        TEXT,
                error_message     TEXT,
                request_json      TEXT    NOT NULL,
                response_json     TEXT,
                latency_ms        REAL    NOT NULL,
                ttft_ms           REAL,
                upstream_ms       REAL,
                prompt_tokens     INTEGER,
                completion_tokens INTEGER,
                total_tokens      INTEGER,
                cost_usd          REAL,
                attempts          INTEGER NOT NULL DEFAULT 0
            );
            -- Few indexes: each one is written for every logged request. Operator queries walk row_id
            -- (newest first) and stop early; exports select by time and model.
            CREATE INDEX requests_created_at      ON requests(created_at);
            CREATE INDEX requests_model_requested ON requests(model_requested);
            CREATE INDEX requests_route           ON requests(route);

            CREATE TABLE feedback (
                row_id          INTEGER PRIMARY KEY,
                request_id      TEXT    NOT NULL REFERENCES requests(id) ON DELETE CASCADE,
                created_at      INTEGER NOT NULL,            -- unix milliseconds
                signal          TEXT    NOT NULL,            -- accepted|rejected|edited|score|comment
                value           REAL,
                correction      TEXT,
                comment         TEXT,
                source          TEXT,
                weight          REAL,
                idempotency_key TEXT UNIQUE
            );
            CREATE INDEX feedback_request_id ON feedback(request_id);
            """),
        // A resent request id is stored as `id#2`, `id#3`, ...; this table remembers the last suffix used per
        // id so that the next rename is one upsert instead of a walk over every earlier copy.
        Migration(version: 2, summary: "last rename suffix per resent request id", sql: """
            CREATE TABLE request_id_suffixes (
                id          TEXT    PRIMARY KEY,             -- a request id that arrived more than once
                last_suffix INTEGER NOT NULL                 -- the n of the newest `id#n`
            ) WITHOUT ROWID;
            """),
        Migration(version: 3, summary: "response_truncated and incomplete flags", sql: """
            ALTER TABLE requests ADD COLUMN response_truncated INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE requests ADD COLUMN incomplete         INTEGER NOT NULL DEFAULT 0;
            """),
        // Keyset paging walks (created_at, id); the same index serves time-range exports, so it replaces
        // the created_at index instead of adding a write.
        Migration(version: 4, summary: "index requests by (created_at, id) for paging", sql: """
            DROP INDEX requests_created_at;
            CREATE INDEX requests_created_at_id ON requests(created_at, id);
            """),
        // Episodes group the requests of one conversation or task; feedback on an episode is stored on each of
        // its requests, with the episode it was given for. The index is partial: rows without an episode
        // (most traffic) cost no index write.
        Migration(version: 5, summary: "episodes on requests and feedback", sql: """
            ALTER TABLE requests ADD COLUMN episode_id TEXT;
            CREATE INDEX requests_episode_id ON requests(episode_id) WHERE episode_id IS NOT NULL;
            ALTER TABLE feedback ADD COLUMN episode_id TEXT;
            """),
        // Traffic policies: the target a policy chose for the request and why (JSON: policy, reason, sticky
        // key, bucket, fallbacks tried), so every result can be attributed to its variant; a shadow run's row
        // names the request it shadowed, so the two answers can be paired.
        Migration(version: 6, summary: "policy variant and decision on requests", sql: """
            ALTER TABLE requests ADD COLUMN variant  TEXT;
            ALTER TABLE requests ADD COLUMN decision TEXT;
            ALTER TABLE requests ADD COLUMN shadow_of TEXT;
            CREATE INDEX requests_variant ON requests(variant, created_at) WHERE variant IS NOT NULL;
            CREATE INDEX requests_shadow_of ON requests(shadow_of) WHERE shadow_of IS NOT NULL;
            """),
        // `flywheel eval`: one row per run (what was compared, its options, its outcome) and one per dataset item
        // (the requests it sent, each check's result, the judge's verdicts with the order they were asked in),
        // written as items finish so an interrupted run resumes where it stopped.
        Migration(version: 7, summary: "evaluation runs and their items", sql: """
            CREATE TABLE eval_runs (
                id          TEXT    PRIMARY KEY,
                created_at  INTEGER NOT NULL,            -- unix milliseconds
                finished_at INTEGER,
                dataset     TEXT    NOT NULL,            -- a file path, or log:<filter>
                candidate   TEXT    NOT NULL,
                baseline    TEXT,                        -- null: the dataset's reference answers
                judge       TEXT,
                options     TEXT    NOT NULL,            -- JSON
                status      TEXT    NOT NULL,            -- running | passed | failed | incomplete
                summary     TEXT                         -- JSON
            );
            CREATE INDEX eval_runs_candidate ON eval_runs(candidate, created_at);
            CREATE TABLE eval_items (
                run_id      TEXT    NOT NULL REFERENCES eval_runs(id) ON DELETE CASCADE,
                item        INTEGER NOT NULL,            -- the dataset's line number, or the log row's position
                result      TEXT    NOT NULL,            -- JSON: requests, checks, verdicts, latencies, error
                PRIMARY KEY (run_id, item)
            ) WITHOUT ROWID;
            """),
        // Traffic policy changes: promotions, rollbacks, rollout steps and the configuration's own split, in
        // order. The newest row per model is the split in force; the daemon polls for new rows, so a change
        // made by the CLI goes live without a restart, and every change says when, from where, why and on
        // which evaluation it relied.
        Migration(version: 8, summary: "traffic policy changes", sql: """
            CREATE TABLE policy_changes (
                id          INTEGER PRIMARY KEY,
                created_at  INTEGER NOT NULL,            -- unix milliseconds
                model       TEXT    NOT NULL,            -- the policy's model name
                variants    TEXT    NOT NULL,            -- JSON [{target, weight}]: the split from now on
                previous    TEXT,                        -- JSON: the split before
                action      TEXT    NOT NULL,            -- config | promote | rollback | rollout_step | rollout_rollback
                reason      TEXT,
                source      TEXT    NOT NULL,            -- who: cli:<user>@<host>, daemon, daemon:rollout
                eval_run    TEXT,                        -- the evaluation the change relied on
                forced      INTEGER NOT NULL DEFAULT 0
            );
            CREATE INDEX policy_changes_model ON policy_changes(model, id);
            """),
        // Virtual API keys (`flywheel keys`): only a salted SHA-256 of each key's secret is stored; the id is the
        // key's public part, so a request's key is found by id and its secret checked against the hash. Every
        // create and revoke adds a row to api_key_changes, whose newest id the daemon polls (a change goes live
        // within a second). Spend per key is summed from the requests at start-up: the partial index holds only
        // keyed rows and covers the sum.
        Migration(version: 9, summary: "virtual API keys", sql: """
            CREATE TABLE api_keys (
                id          TEXT    PRIMARY KEY,         -- the public part of fw_<id>_<secret>
                name        TEXT    NOT NULL,
                salt        TEXT    NOT NULL,            -- hex, 16 random bytes
                hash        TEXT    NOT NULL,            -- hex SHA-256(salt || secret)
                models      TEXT,                        -- JSON array of model globs; null: any model
                rpm         INTEGER,
                tpm         INTEGER,
                budget_usd  REAL,
                expires_at  INTEGER,                     -- unix milliseconds
                created_at  INTEGER NOT NULL,            -- unix milliseconds
                revoked_at  INTEGER
            ) WITHOUT ROWID;
            CREATE TABLE api_key_changes (
                id          INTEGER PRIMARY KEY,
                created_at  INTEGER NOT NULL,            -- unix milliseconds
                key_id      TEXT    NOT NULL,
                action      TEXT    NOT NULL,            -- create | revoke
                source      TEXT    NOT NULL             -- cli:<user>@<host>
            );
            CREATE INDEX requests_client_key_cost ON requests(client_key_id, cost_usd) WHERE client_key_id IS NOT NULL;
            """),
        // `x-flywheel-log: metadata`: the request was served and logged without its content (request body,
        // response, error text); tail and show say so, export skips the row, feedback on it still works.
        Migration(version: 10, summary: "content_withheld flag on requests", sql: """
            ALTER TABLE requests ADD COLUMN content_withheld INTEGER NOT NULL DEFAULT 0;
            """),
        // `tail --model M` takes the newest rows of M requested or served, each side from its own index: without
        // this one, a model with few rows (or a name nobody used) walked all 10 million rows of a large log (4 s).
        Migration(version: 11, summary: "index requests by model_served", sql: """
            CREATE INDEX requests_model_served ON requests(model_served);
            """),
        // What retention pruned of each key's requests: a budget is spend over the key's life, and the daemon sums
        // it from the log at start-up, so a pruned row's cost moves here in the same transaction that deletes it.
        Migration(version: 12, summary: "per-key usage of pruned requests", sql: """
            CREATE TABLE key_pruned_usage (
                key_id       TEXT    PRIMARY KEY,
                requests     INTEGER NOT NULL DEFAULT 0,
                total_tokens INTEGER NOT NULL DEFAULT 0,
                cost_usd     REAL    NOT NULL DEFAULT 0
            ) WITHOUT ROWID;
            """),
    ]

    /// Brings a read-write connection up to the last of `migrations` (by default this build's list; tests
    /// pass a longer one to exercise an upgrade). Each pending migration runs in its own `BEGIN IMMEDIATE`
    /// transaction and the version is re-read under the lock, so two processes opening the same file at
    /// once do not both migrate. Throws `schemaTooNew` for a newer database.
    static func migrate(_ connection: SQLiteConnection, migrations: [Migration] = migrations) throws(StoreError) {
        let supported = migrations.count
        for (index, migration) in migrations.enumerated() {
            precondition(migration.version == index + 1, "migrations must be numbered 1, 2, 3, ... in order")
        }
        let found = try translatingSQLiteErrors { () throws(SQLiteError) in try connection.userVersion() }
        try checkNotTooNew(found, supported: supported)
        guard found < supported else { return }
        for migration in migrations where migration.version > found {
            try translatingSQLiteErrors { () throws(SQLiteError) in try connection.execute("BEGIN IMMEDIATE") }
            do throws(StoreError) {
                let version = try translatingSQLiteErrors { () throws(SQLiteError) in try connection.userVersion() }
                try checkNotTooNew(version, supported: supported)
                if version < migration.version {
                    try translatingSQLiteErrors { () throws(SQLiteError) in
                        try connection.execute(migration.sql)
                        try connection.execute("PRAGMA user_version = \(migration.version)")
                    }
                }
                try translatingSQLiteErrors { () throws(SQLiteError) in try connection.execute("COMMIT") }
            } catch {
                try? connection.execute("ROLLBACK")
                throw error
            }
        }
    }

    static func checkNotTooNew(_ found: Int, supported: Int = currentVersion) throws(StoreError) {
        if found > supported { throw StoreError.schemaTooNew(found: found, supported: supported) }
    }
}
