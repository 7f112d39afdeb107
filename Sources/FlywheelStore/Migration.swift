/// One step of the schema history: the SQL that takes the database from `version - 1` to `version`.
struct Migration: Sendable {
    let version: Int
    let summary: String
    let sql: String
}
