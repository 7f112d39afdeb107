/// The names before the store had a backend seam; use `SQLiteLogWriter` (as an `any LogSink`) instead.
@available(*, deprecated, renamed: "SQLiteLogWriter")
public typealias LogWriter = SQLiteLogWriter

/// The name before the store had a backend seam; use `SQLiteLogReader` (as an `any LogQueries`) instead.
@available(*, deprecated, renamed: "SQLiteLogReader")
public typealias LogReader = SQLiteLogReader
