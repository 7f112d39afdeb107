import XCTest
@testable import FlywheelUpstream

final class TimerHeapTests: XCTestCase {
    func testOrderAndRemoval() throws {
        let engine = try CurlEngine(configuration: .init())
        let request = UpstreamRequest(path: "/x", endpoints: [UpstreamEndpoint(name: "e", baseURL: "http://x")])
        let jobs = (0..<50).map { _ in TransferJob(request: request, handler: RecordingHandler(), engine: engine) }
        var heap = TimerHeap()
        for (i, job) in jobs.enumerated() { heap.schedule(job, at: UInt64((i * 37) % 50)) }
        heap.remove(jobs[1])  // due 37
        heap.schedule(jobs[2], at: 1000)  // reschedule
        XCTAssertEqual(heap.count, 49)
        var last: UInt64 = 0
        var popped = 0
        while let job = heap.popDue(now: 999) {
            XCTAssertGreaterThanOrEqual(job.dueNanos, last)
            XCTAssertFalse(job === jobs[1])
            last = job.dueNanos
            popped += 1
        }
        XCTAssertEqual(popped, 48)
        XCTAssertTrue(heap.popDue(now: 1000) === jobs[2])
        XCTAssertNil(heap.nextDue)
    }
}
