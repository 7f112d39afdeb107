import FlywheelHTTP
import XCTest

final class ServerSentEventsTests: XCTestCase {
    private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testEncodeSingleLineData() {
        XCTAssertEqual(text(ServerSentEvents.encode(data: "{\"a\":1}")), "data: {\"a\":1}\n\n")
    }

    func testEncodeSplitsMultiLineData() {
        XCTAssertEqual(text(ServerSentEvents.encode(data: "one\ntwo\r\nthree")), "data: one\ndata: two\ndata: three\n\n")
    }

    func testEncodeWithEventName() {
        XCTAssertEqual(text(ServerSentEvents.encode(event: "done", data: "[DONE]")), "event: done\ndata: [DONE]\n\n")
        XCTAssertEqual(text(ServerSentEvents.encode(event: nil, data: "")), "data: \n\n")
    }

    func testParserReadsWhatEncoderWrites() throws {
        var parser = ServerSentEventParser()
        let bytes = ServerSentEvents.encode(event: "delta", data: "line1\nline2") + ServerSentEvents.encode(data: "x")
        XCTAssertEqual(try parser.feed(bytes), [.init(event: "delta", data: "line1\nline2"), .init(data: "x")])
    }

    func testParserHandlesAllLineEndingsAndComments() throws {
        var parser = ServerSentEventParser()
        let stream = ": keep-alive comment\r\nid: 7\rdata: a\r\ndata:b\n\nevent: e\ndata:  spaced\r\r"
        XCTAssertEqual(try parser.feed(Array(stream.utf8)), [
            .init(event: nil, data: "a\nb", id: "7"),
            .init(event: "e", data: " spaced", id: nil),
        ])
    }

    func testParserJoinsEventsSplitAcrossChunksByteByByte() throws {
        var parser = ServerSentEventParser()
        let stream = Array("data: {\"x\":1}\r\n\r\ndata: [DONE]\r\n\r\n".utf8)
        var events: [ServerSentEventParser.Event] = []
        for byte in stream { events += try parser.feed([byte]) }
        XCTAssertEqual(events.map(\.data), ["{\"x\":1}", "[DONE]"])
    }

    func testParserIgnoresEventsWithoutData() throws {
        var parser = ServerSentEventParser()
        XCTAssertEqual(try parser.feed(Array("event: ping\n\nretry: 10\n\n".utf8)), [])
        XCTAssertEqual(try parser.feed(Array("data\n\n".utf8)), [.init(data: "")])
    }

    func testParserRejectsOversizedEvent() {
        var parser = ServerSentEventParser(maxEventBytes: 16)
        XCTAssertThrowsError(try parser.feed(Array("data: 0123456789abcdefXYZ".utf8)))
        var other = ServerSentEventParser(maxEventBytes: 16)
        XCTAssertThrowsError(try other.feed(Array("data: 0123456789\ndata: 0123456789\n".utf8)))
    }
}
