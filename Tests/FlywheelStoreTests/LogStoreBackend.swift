import Foundation
import FlywheelStore

/// A log backend that `LogStoreContractTests` runs against. A new backend (PostgreSQL, ...) adds one
/// conforming type and lists it in `LogStoreBackends.all`; every contract test then runs for it too.
protocol LogStoreBackend: Sendable, CustomStringConvertible {
    /// A fresh, empty log. Backends apply the tuning they have (it makes queueing observable) and may
    /// ignore the rest.
    func makeStore(_ tuning: LogStoreTuning) throws -> LogStoreUnderTest
}

/// Writer settings a contract test may ask for.
struct LogStoreTuning {
    var capacity = 10_000
    var maxBatch = 1_000
    /// Seconds the writer may hold rows back to batch them.
    var flushInterval = 0.05
}

/// One empty log opened for a test.
struct LogStoreUnderTest {
    let sink: any LogSink
    /// Opens queries on the same log; call it after the writes to be read are flushed.
    let openQueries: () throws -> any LogQueries
    /// Closes the sink and deletes the log.
    let remove: () -> Void
}

enum LogStoreBackends {
    static let all: [any LogStoreBackend] = [SQLiteBackend()]
}

/// A SQLite file in a fresh temporary directory.
struct SQLiteBackend: LogStoreBackend {
    var description: String { "SQLite" }

    func makeStore(_ tuning: LogStoreTuning) throws -> LogStoreUnderTest {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("flywheel-contract-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("log.sqlite").path
        let writer = try SQLiteLogWriter(path: path, capacity: tuning.capacity, maxBatch: tuning.maxBatch,
                                         flushInterval: tuning.flushInterval)
        return LogStoreUnderTest(
            sink: writer,
            openQueries: { try SQLiteLogReader(path: path) },
            remove: {
                writer.close()
                try? FileManager.default.removeItem(at: directory)
            })
    }
}
