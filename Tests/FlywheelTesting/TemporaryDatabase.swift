import Foundation
import FlywheelStore

/// A fresh directory for one test's SQLite log, removed (with the WAL files) when the value goes away.
/// The database itself is created by whoever opens `path` for writing (the gateway's log writer).
public final class TemporaryDatabase: Sendable {
    public let directory: String
    /// `<directory>/flywheel.db`.
    public let path: String

    public init() throws {
        var template = Array((NSTemporaryDirectory() + "/flywheel-test-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestSupportError("mkdtemp failed: errno \(errno)")
        }
        directory = String(cString: made)
        path = directory + "/flywheel.db"
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A read-only connection, as `flywheel tail` opens one. Use it on one thread.
    public func reader() throws -> SQLiteLogReader {
        try SQLiteLogReader(path: path)
    }

    /// The committed row of request `id`, or nil.
    public func request(id: String) throws -> RequestRecord? {
        try reader().request(id: id)
    }

    /// Every committed request row, in insert order.
    public func requests(filter: RequestFilter = RequestFilter()) throws -> [RequestRecord] {
        try reader().latestRequests(limit: Int(Int32.max), filter: filter).map(\.record)
    }

    /// How many request rows are committed.
    public func requestCount(filter: RequestFilter = RequestFilter()) throws -> Int {
        try reader().requestCount(filter: filter)
    }

    /// The committed feedback on request `id`, oldest first.
    public func feedback(forRequest id: String) throws -> [FeedbackRecord] {
        try reader().feedback(forRequest: id)
    }
}

/// A test fixture could not be set up (a system call failed).
public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
