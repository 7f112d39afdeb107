import XCTest
import Synchronization
@testable import FlywheelKernels
#if canImport(Glibc)
import Glibc
#endif

final class ComputePoolTests: XCTestCase {
    /// Runs `rounds` rounds and returns how often each index ran and whether any call saw a wrong count.
    func counts(_ pool: ComputePool, rounds: Int, pauseMicroseconds: UInt32 = 0) -> (counts: [Int], wrongCount: Bool) {
        let n = pool.threadCount
        let counts = UnsafeMutablePointer<Int>.allocate(capacity: n)
        counts.initialize(repeating: 0, count: n)
        defer { counts.deallocate() }
        let wrong = UnsafeMutablePointer<Bool>.allocate(capacity: n)
        wrong.initialize(repeating: false, count: n)
        defer { wrong.deallocate() }
        for _ in 0 ..< rounds {
            // Each index touches only its own slot, so the body needs no locking.
            pool.run { index, count in
                counts[index] += 1
                if count != n { wrong[index] = true }
            }
            if pauseMicroseconds > 0 { usleep(pauseMicroseconds) }
        }
        return (Array(UnsafeBufferPointer(start: counts, count: n)), (0 ..< n).contains { wrong[$0] })
    }

    func testEveryIndexRunsExactlyOncePerRoundOverManyRounds() {
        // More threads than cores (this machine has 2) is slow with spinning workers: fewer rounds.
        for (threads, rounds) in [(1, 5000), (2, 5000), (3, 300), (5, 300)] {
            let pool = ComputePool(threadCount: threads)
            let result = counts(pool, rounds: rounds)
            XCTAssertEqual(result.counts, [Int](repeating: rounds, count: threads), "\(threads) threads")
            XCTAssertFalse(result.wrongCount)
        }
    }

    func testWorkSplitBySliceCoversEveryElementOnce() {
        let pool = ComputePool(threadCount: 3)
        var marks = [Int](repeating: 0, count: 1001)
        marks.withUnsafeMutableBufferPointer { marks in
            for _ in 0 ..< 100 {
                pool.run { index, count in
                    for i in ComputePool.slice(marks.count, index: index, count: count, granularity: 4) { marks[i] += 1 }
                }
            }
        }
        XCTAssertEqual(marks, [Int](repeating: 100, count: 1001))
    }

    func testParkedWorkersWakeForTheNextRun() {
        // No spinning at all: every worker parks between runs, so every run must wake it.
        let pool = ComputePool(threadCount: 2, spinMicroseconds: 0)
        let result = counts(pool, rounds: 200, pauseMicroseconds: 200)
        XCTAssertEqual(result.counts, [200, 200])
    }

    func testRunAfterShutdownStillRunsEveryIndexOnTheCaller() {
        let pool = ComputePool(threadCount: 4)
        pool.shutdown()
        pool.shutdown()
        let caller = pthread_self()
        var onCaller = [Bool](repeating: false, count: 4)
        onCaller.withUnsafeMutableBufferPointer { onCaller in
            pool.run { index, _ in onCaller[index] = pthread_equal(pthread_self(), caller) != 0 }
        }
        XCTAssertEqual(onCaller, [true, true, true, true])
    }

    func testReleasedPoolsJoinTheirThreads() throws {
        let before = try threadCount()
        for _ in 0 ..< 10 {
            let pool = ComputePool(threadCount: 3, spinMicroseconds: 50)
            XCTAssertEqual(counts(pool, rounds: 10).counts, [10, 10, 10])
            XCTAssertEqual(try threadCount(), before + 2)
        }
        XCTAssertEqual(try threadCount(), before)
    }

    func testSliceSplitsUnevenTotalsIntoContiguousGranularPieces() {
        for (total, count, granularity) in [(10, 3, 1), (1001, 3, 4), (3, 4, 1), (0, 2, 4), (64, 2, 32)] {
            let slices = (0 ..< count).map { ComputePool.slice(total, index: $0, count: count, granularity: granularity) }
            XCTAssertEqual(slices.first?.lowerBound, 0)
            XCTAssertEqual(slices.last?.upperBound, total)
            for (a, b) in zip(slices, slices.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            for slice in slices.dropLast() where !slice.isEmpty {
                XCTAssertEqual(slice.lowerBound % granularity, 0, "\(slices)")
                XCTAssertEqual(slice.upperBound % granularity, 0, "\(slices)")
            }
        }
    }

    func testDefaultThreadCountIsBetweenOneAndTheOnlineCPUs() {
        let count = ComputePool.defaultThreadCount
        XCTAssertGreaterThanOrEqual(count, 1)
        XCTAssertLessThanOrEqual(count, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }

    /// Threads of this process, from /proc/self/task.
    func threadCount() throws -> Int {
        guard let directory = opendir("/proc/self/task") else { throw XCTSkip("no /proc/self/task") }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        return count
    }

    func testPiecesCoverEveryElementOnceInMultiplesOfTheGranularity() {
        for threads in [1, 2, 3] {
            let pool = ComputePool(threadCount: threads)
            for (total, granularity) in [(1001, 4), (8, 4), (3, 4), (0, 4), (37, 1)] {
                let marks = UnsafeMutablePointer<Int>.allocate(capacity: max(1, total))
                marks.initialize(repeating: 0, count: max(1, total))
                defer { marks.deallocate() }
                let misaligned = Mutex(0)
                for _ in 0 ..< 50 {
                    pool.run(pieces: total, granularity: granularity) { range in
                        if range.lowerBound % granularity != 0 { misaligned.withLock { $0 += 1 } }
                        for i in range { marks[i] += 1 }
                    }
                }
                XCTAssertEqual(Array(UnsafeBufferPointer(start: marks, count: total)),
                               [Int](repeating: 50, count: total), "\(threads) threads, \(total) by \(granularity)")
                XCTAssertEqual(misaligned.withLock { $0 }, 0)
            }
        }
    }

    /// The point of pieces: a thread held up inside its first piece does not hold the others' work. Whichever thread
    /// takes piece 0 waits there until every other piece is done, so the other thread must take all of them (with a
    /// fixed share each, this would wait forever: the wait gives up after a minute and the test fails).
    func testAThreadHeldUpLeavesItsRemainingPiecesToTheOthers() {
        let pool = ComputePool(threadCount: 2)
        let done = Atomic<Int>(0)
        let takers = Mutex<[Int: [Int]]>([:])
        let gaveUp = Atomic<Bool>(false)
        pool.run(pieces: 8, perThread: 4) { range in
            let me = Int(bitPattern: UInt(pthread_self()))
            takers.withLock { $0[me, default: []].append(range.lowerBound) }
            if range.lowerBound == 0 {
                let deadline = Date().addingTimeInterval(60)
                while done.load(ordering: .acquiring) < 7 {
                    if Date() > deadline { gaveUp.store(true, ordering: .relaxed); break }
                    sched_yield()
                }
            } else {
                done.add(1, ordering: .releasing)
            }
        }
        XCTAssertFalse(gaveUp.load(ordering: .relaxed))
        let byThread = takers.withLock { $0 }
        XCTAssertEqual(byThread.values.flatMap { $0 }.sorted(), Array(0 ..< 8))
        // The thread that held piece 0 took nothing else; the other took the other seven.
        let holder = byThread.values.first { $0.contains(0) }
        XCTAssertEqual(holder, [0])
        XCTAssertEqual(byThread.values.map(\.count).sorted(), [1, 7])
    }
}
