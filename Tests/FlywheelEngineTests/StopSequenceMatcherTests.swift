import XCTest
@testable import FlywheelEngine

final class StopSequenceMatcherTests: XCTestCase {
    func testStopStringSplitAcrossPiecesIsNeverEmitted() {
        var m = StopSequenceMatcher(stops: ["END"])
        var out = ""
        var stopped = false
        for piece in ["Hello E", "N", "D and more"] {
            let r = m.append(piece)
            out += r.output
            stopped = r.stopped
            if stopped { break }
        }
        XCTAssertTrue(stopped)
        XCTAssertEqual(out, "Hello ")
    }

    func testHeldBackPrefixIsReleasedWhenItStopsMatching() {
        var m = StopSequenceMatcher(stops: ["\n\nUser:"])
        XCTAssertEqual(m.append("a\n").output, "a")
        XCTAssertEqual(m.append("\nU").output, "")
        XCTAssertEqual(m.append("x").output, "\n\nUx")
    }

    func testEarliestStopWins() {
        var m = StopSequenceMatcher(stops: ["cd", "b"])
        let r = m.append("abcd")
        XCTAssertEqual(r.output, "a")
        XCTAssertTrue(r.stopped)
    }

    func testFinishReleasesAnIncompleteTail() {
        var m = StopSequenceMatcher(stops: ["STOP"])
        XCTAssertEqual(m.append("go ST").output, "go ")
        XCTAssertEqual(m.finish(), "ST")
    }

    func testNoStopsPassesTextThrough() {
        var m = StopSequenceMatcher(stops: ["", ""])
        XCTAssertEqual(m.append("anything").output, "anything")
    }
}
