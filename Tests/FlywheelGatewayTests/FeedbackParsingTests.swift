import XCTest
import FlywheelStore
@testable import FlywheelGateway

final class FeedbackParsingTests: XCTestCase {
    func parse(_ text: String, key: String? = nil) -> Result<FeedbackRecord, OpenAIError> {
        Gateway.parseFeedback(Array(text.utf8), idempotencyKey: key)
    }

    func testValidBodiesBecomeRecords() throws {
        let r = try parse(#"{"request_id":"abc","signal":"score","value":0.8,"weight":2,"source":"app","comment":"ok"}"#, key: "k1").get()
        XCTAssertEqual(r.signal, .score)
        XCTAssertEqual(r.value, 0.8)
        XCTAssertEqual(r.weight, 2)
        XCTAssertEqual(r.idempotencyKey, "k1")
        let e = try parse(#"{"request_id":"abc","signal":"edited","correction":"better"}"#).get()
        XCTAssertEqual(e.correction, "better")
    }

    func testEachBadInputGetsA400NamingTheField() {
        let cases: [(String, String?)] = [
            ("not json", nil),
            ("[1]", nil),
            (#"{"signal":"accepted"}"#, "request_id"),
            (#"{"request_id":"a b","signal":"accepted"}"#, "request_id"),
            (#"{"request_id":"a"}"#, "signal"),
            (#"{"request_id":"a","signal":"liked"}"#, "signal"),
            (#"{"request_id":"a","signal":"score"}"#, "value"),
            (#"{"request_id":"a","signal":"score","value":"high"}"#, "value"),
            (#"{"request_id":"a","signal":"edited"}"#, "correction"),
            (#"{"request_id":"a","signal":"comment"}"#, "comment"),
            (#"{"request_id":"a","signal":"accepted","weight":-1}"#, "weight"),
            (#"{"request_id":"a","signal":"accepted","comment":5}"#, "comment"),
        ]
        for (body, param) in cases {
            guard case .failure(let error) = parse(body) else { XCTFail("accepted \(body)"); continue }
            XCTAssertEqual(error.status, 400, body)
            XCTAssertEqual(error.param, param, body)
        }
        guard case .failure = parse(#"{"request_id":"a","signal":"accepted"}"#, key: "") else { return XCTFail("empty key accepted") }
    }
}
