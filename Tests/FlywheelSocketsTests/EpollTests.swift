@testable import FlywheelSockets
import XCTest

/// The epoll and eventfd wrappers over the CLinux shim.
final class EpollTests: XCTestCase {
    func testReadyEventCarriesItsFullSixtyFourBitToken() throws {
        let epoll = try Epoll(capacity: 4)
        let first = try EventFD()
        let second = try EventFD()
        defer {
            first.close()
            second.close()
            epoll.close()
        }
        // Distinct high and low halves: a misread packed record would mix them up.
        let firstToken: UInt64 = 0xDEAD_BEEF_0000_0007
        let secondToken: UInt64 = 0x0123_4567_89AB_CDEF
        try epoll.add(first.descriptor, events: .input, token: firstToken)
        try epoll.add(second.descriptor, events: [.input, .output], token: secondToken)
        first.signal()

        var reports: [UInt64: EpollEvents] = [:]
        for index in 0..<(try epoll.wait(timeoutMilliseconds: -1)) {
            let (events, token) = epoll.event(at: index)
            reports[token] = events
        }
        // The first is readable (signalled), the second writable (an eventfd always is) but not readable.
        XCTAssertEqual(Set(reports.keys), [firstToken, secondToken])
        XCTAssertTrue(reports[firstToken]?.contains(.input) ?? false)
        XCTAssertTrue(reports[secondToken]?.contains(.output) ?? false)
        XCTAssertFalse(reports[secondToken]?.contains(.input) ?? true)

        first.drain()
        try epoll.remove(second.descriptor)
        XCTAssertEqual(try epoll.wait(timeoutMilliseconds: 0), 0, "drained and removed: nothing is ready")
    }

    func testModifyingAnUnknownDescriptorNamesTheCall() throws {
        let epoll = try Epoll(capacity: 1)
        let eventFD = try EventFD()
        defer {
            eventFD.close()
            epoll.close()
        }
        XCTAssertThrowsError(try epoll.modify(eventFD.descriptor, events: .input, token: 1)) { error in
            XCTAssertEqual((error as? SocketError)?.call, "epoll_ctl EPOLL_CTL_MOD")
            XCTAssertEqual((error as? SocketError)?.errno, ENOENT)
        }
        XCTAssertEqual(epoll.foreignControl(.remove, eventFD.descriptor, [], 0), ENOENT)
    }
}
