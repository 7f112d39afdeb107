import XCTest
@testable import FlywheelGateway

final class RequestIDTests: XCTestCase {
    func testUUIDv7HasVersionVariantAndTimeOrder() {
        let a = RequestID.newUUIDv7(nowMillis: 1_700_000_000_000)
        let b = RequestID.newUUIDv7(nowMillis: 1_700_000_000_001)
        XCTAssertEqual(a.count, 36)
        let chars = Array(a)
        XCTAssertEqual(chars[14], "7")
        XCTAssertTrue("89ab".contains(chars[19]))
        XCTAssertLessThan(a, b)
        XCTAssertEqual(String(a.prefix(8)), "018bcfe5")  // 1_700_000_000_000 ms = 0x018BCFE56800
    }

    func testClientIDsAreKeptOnlyWhenSane() {
        XCTAssertEqual(RequestID.resolve(clientValue: "req_abc-1.2:3"), "req_abc-1.2:3")
        XCTAssertNotEqual(RequestID.resolve(clientValue: "has space"), "has space")
        XCTAssertNotEqual(RequestID.resolve(clientValue: String(repeating: "a", count: 129)).count, 129)
        XCTAssertNotEqual(RequestID.resolve(clientValue: ""), "")
        XCTAssertEqual(RequestID.resolve(clientValue: "x\r\ninjected").count, 36)
    }
}
