import FlywheelHTTP
import XCTest

final class HTTPHeadersTests: XCTestCase {
    func testLookupIsCaseInsensitiveAndOrdered() {
        var headers = HTTPHeaders([("Accept", "a"), ("X-Multi", "1")])
        headers.add("x-multi", "2")
        XCTAssertEqual(headers["ACCEPT"], "a")
        XCTAssertEqual(headers.values("X-MULTI"), ["1", "2"])
        XCTAssertEqual(headers.count, 3)
        XCTAssertEqual(headers.map(\.name), ["Accept", "X-Multi", "x-multi"])
    }

    func testSetReplacesAllAndRemoveDeletesAll() {
        var headers: HTTPHeaders = ["A": "1"]
        headers.add("a", "2")
        headers.add("B", "3")
        headers.set("A", "9")
        XCTAssertEqual(headers.values("a"), ["9"])
        XCTAssertEqual(headers.count, 2)
        headers.set("C", "4")
        XCTAssertEqual(headers["c"], "4")
        headers.remove("b")
        XCTAssertNil(headers["B"])
        XCTAssertEqual(headers.count, 2)
    }

    func testConnectionTokens() {
        let headers: HTTPHeaders = ["Connection": "Keep-Alive, Upgrade"]
        XCTAssertTrue(headers.containsToken("keep-alive", in: "connection"))
        XCTAssertTrue(headers.containsToken("upgrade", in: "Connection"))
        XCTAssertFalse(headers.containsToken("close", in: "Connection"))
    }
}
