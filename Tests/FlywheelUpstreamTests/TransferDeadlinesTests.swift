import XCTest
@testable import FlywheelUpstream

final class TransferDeadlinesTests: XCTestCase {
    func testOrderAndRemoval() throws {
        let loop = TestEventLoop()
        defer { loop.stop() }
        let scheduler = try TransferScheduler(configuration: .init(), loop: loop)
        let request = UpstreamRequest(path: "/x", endpoints: [UpstreamEndpoint(name: "e", baseURL: "http://x")])
        let jobs = (0..<50).map { _ in TransferJob(request: request, handler: RecordingHandler(), scheduler: scheduler) }
        var deadlines = TransferDeadlines()
        for (i, job) in jobs.enumerated() { deadlines.schedule(job, at: UInt64((i * 37) % 50)) }
        deadlines.remove(jobs[1])  // due 37
        deadlines.schedule(jobs[2], at: 1000)  // reschedule
        XCTAssertEqual(deadlines.count, 49)
        var last: UInt64 = 0
        var popped = 0
        while let job = deadlines.popDue(now: 999) {
            XCTAssertGreaterThanOrEqual(job.dueNanos, last)
            XCTAssertFalse(job === jobs[1])
            last = job.dueNanos
            popped += 1
        }
        XCTAssertEqual(popped, 48)
        XCTAssertTrue(deadlines.popDue(now: 1000) === jobs[2])
        XCTAssertNil(deadlines.nextDue)
    }
}
