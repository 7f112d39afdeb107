import Dispatch
import Foundation
import Synchronization
import XCTest
@testable import FlywheelStore

/// Shared helpers: temp directories, sample rows, synchronous feedback submits.
enum StoreTestSupport {
    /// A fresh directory under the system temp dir; removed by the returned cleanup block.
    static func makeTempDirectory(_ test: XCTestCase) throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("flywheel-store-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    static func databasePath(_ test: XCTestCase) throws -> String {
        try makeTempDirectory(test).appendingPathComponent("log.sqlite").path
    }

    static func record(_ id: String, model: String? = "gpt-4o-mini", route: String? = "upstream",
                       status: Int = 200, endpoint: String = "/v1/chat/completions", at millis: Int64 = 1_700_000_000_000) -> RequestRecord {
        var r = RequestRecord(id: id, createdAtMillis: millis, method: "POST", endpoint: endpoint,
                              requestJSON: #"{"model":"\#(model ?? "")","messages":[]}"#, status: status, latencyMillis: 12.5)
        r.modelRequested = model
        r.modelServed = model
        r.route = route
        return r
    }

    /// Submits feedback and waits (up to 10 s) for its completion.
    static func submit(_ writer: SQLiteLogWriter, _ feedback: FeedbackRecord,
                       file: StaticString = #filePath, line: UInt = #line) -> Result<FeedbackSubmission, StoreError>? {
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        writer.submitFeedback(feedback) { result in
            box.set(result)
            done.signal()
        }
        if done.wait(timeout: .now() + 10) == .timedOut {
            XCTFail("feedback completion never called", file: file, line: line)
            return nil
        }
        return box.get()
    }

    /// Polls `condition` every millisecond for up to `seconds`.
    static func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(1_000)
        }
        return condition()
    }
}
