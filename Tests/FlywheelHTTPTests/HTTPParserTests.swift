@_spi(Fuzzing) @testable import FlywheelHTTP
import XCTest

final class HTTPParserTests: XCTestCase {
    private func makeParser(maxHeaderBytes: Int = 16 * 1024, maxBodyBytes: Int = 1 << 20) -> HTTPParser {
        HTTPParser(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes)
    }

    /// Feeds `text` in pieces of `pieceSize` bytes and collects every request.
    private func parseAll(_ text: String, pieceSize: Int = .max, parser: inout HTTPParser) throws -> [HTTPRequest] {
        var requests: [HTTPRequest] = []
        let bytes = Array(text.utf8)
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + max(1, min(pieceSize, bytes.count)))
            parser.append(bytes[offset..<end])
            offset = end
            loop: while true {
                switch try parser.next() {
                case .needMore: break loop
                case .continueExpected: continue
                case .request(let request): requests.append(request)
                }
            }
        } while offset < bytes.count
        return requests
    }

    private func parseAll(_ text: String, pieceSize: Int = .max) throws -> [HTTPRequest] {
        var parser = makeParser()
        return try parseAll(text, pieceSize: pieceSize, parser: &parser)
    }

    private func assertRejected(_ text: String, status: Int, parser: HTTPParser? = nil,
                                file: StaticString = #filePath, line: UInt = #line) {
        var parser = parser ?? makeParser()
        XCTAssertThrowsError(try parseAll(text, parser: &parser), file: file, line: line) { error in
            XCTAssertEqual((error as? HTTPParserError)?.status, status, "\(error)", file: file, line: line)
        }
    }

    func testAPerPathBodyLimitRefusesFromTheHeadAndCountsChunks() throws {
        let small = HTTPParser(maxHeaderBytes: 16 * 1024, maxBodyBytes: 1 << 20,
                               bodyLimit: { _, path in path == "/small" ? 10 : nil })
        assertRejected("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n", status: 413, parser: small)
        assertRejected("POST /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n",
                       status: 413, parser: small)
        var parser = small
        let ok = try parseAll("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
                              + "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n01234567890123456789", parser: &parser)
        XCTAssertEqual(ok.map(\.body.count), [10, 20])
    }

    func testSimpleGet() throws {
        let requests = try parseAll("GET /v1/models?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n")
        XCTAssertEqual(requests.count, 1)
        let request = requests[0]
        XCTAssertEqual(request.method, "GET")
        XCTAssertEqual(request.target, "/v1/models?x=1")
        XCTAssertEqual(request.path, "/v1/models")
        XCTAssertEqual(request.query, "x=1")
        XCTAssertEqual(request.version, .http1_1)
        XCTAssertEqual(request.headers["host"], "example")
        XCTAssertEqual(request.headers["ACCEPT"], "*/*")
        XCTAssertEqual(request.body, [])
    }

    func testPostWithContentLength() throws {
        let requests = try parseAll("POST /chat HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
        XCTAssertEqual(requests.map { String(decoding: $0.body, as: UTF8.self) }, ["hello world"])
    }

    func testChunkedBodyWithExtensionsAndTrailers() throws {
        let text = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "4;name=value\r\nWiki\r\n5 ; x\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: never\r\n\r\n"
        let requests = try parseAll(text)
        XCTAssertEqual(requests.map { String(decoding: $0.body, as: UTF8.self) }, ["Wikipedia in\r\n\r\nchunks."])
    }

    func testRequestSplitAcrossManyTinyReads() throws {
        let text = "POST /split HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            + "PUT /two HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
        for pieceSize in [1, 2, 3, 7] {
            let requests = try parseAll(text, pieceSize: pieceSize)
            XCTAssertEqual(requests.map(\.path), ["/split", "/two"], "piece size \(pieceSize)")
            XCTAssertEqual(requests.map { String(decoding: $0.body, as: UTF8.self) }, ["abcde", "xyz"])
        }
    }

    func testPipelinedPairIsParsedInOrder() throws {
        var parser = makeParser()
        parser.append(Array("GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n".utf8))
        guard case .request(let first) = try parser.next() else { return XCTFail("expected /a") }
        XCTAssertEqual(first.path, "/a")
        XCTAssertTrue(parser.hasPartialRequest)
        guard case .request(let second) = try parser.next() else { return XCTFail("expected /b") }
        XCTAssertEqual(second.path, "/b")
        guard case .needMore = try parser.next() else { return XCTFail("expected needMore") }
        XCTAssertFalse(parser.hasPartialRequest)
    }

    func testLeadingEmptyLinesAreTolerated() throws {
        for pieceSize in [1, 2, .max] {
            let requests = try parseAll("\r\n\r\nGET / HTTP/1.0\r\nA: b\r\n\r\n", pieceSize: pieceSize)
            XCTAssertEqual(requests.first?.version, .http1_0, "piece size \(pieceSize)")
            XCTAssertEqual(requests.first?.headers["a"], "b")
        }
    }

    func testBareLineFeedIsRejectedEverywhere() {
        assertRejected("GET / HTTP/1.1\nHost: h\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nHost: h\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nHost: h\r\n\n", status: 400)
        assertRejected("GET / HTTP/1.0\nA: b\n\n", status: 400)
        assertRejected("\nGET / HTTP/1.1\r\n\r\n", status: 400)
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        assertRejected(chunked + "3\nabc\r\n0\r\n\r\n", status: 400)
        assertRejected(chunked + "3\r\nabc\n0\r\n\r\n", status: 400)
        assertRejected(chunked + "3\r\nabc\r\n0\n\r\n", status: 400)
        assertRejected(chunked + "3\r\nabc\r\n0\r\n\n", status: 400)
        assertRejected(chunked + "0\r\nX-Trailer: 1\n\r\n", status: 400)
    }

    func testBareCarriageReturnIsRejected() {
        assertRejected("GET / HTTP/1.1\rHost: h\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", status: 400)
        assertRejected("GET /\r HTTP/1.1\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n", status: 400)
    }

    func testExpectContinueIsReportedBeforeBody() throws {
        var parser = makeParser()
        parser.append(Array("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n".utf8))
        guard case .continueExpected = try parser.next() else { return XCTFail("expected continue") }
        guard case .needMore = try parser.next() else { return XCTFail("expected needMore") }
        parser.append(Array("ok".utf8))
        guard case .request(let request) = try parser.next() else { return XCTFail("expected request") }
        XCTAssertEqual(request.body, Array("ok".utf8))
    }

    func testMalformedRequestLinesAreRejected() {
        assertRejected("GET\r\n\r\n", status: 400)
        assertRejected("GET /\r\n\r\n", status: 400)
        assertRejected("GET  / HTTP/1.1\r\n\r\n", status: 400)
        assertRejected("G(T / HTTP/1.1\r\n\r\n", status: 400)
        assertRejected("GET / FTP/1.1\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1 extra\r\n\r\n", status: 400)
    }

    func testBadVersionIsRejected() {
        assertRejected("GET / HTTP/2.0\r\n\r\n", status: 505)
        assertRejected("GET / HTTP/1.2\r\n\r\n", status: 505)
        assertRejected("GET / HTTP/1.x\r\n\r\n", status: 400)
    }

    func testHeaderWithoutColonIsRejected() {
        assertRejected("GET / HTTP/1.1\r\nNoColon\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\n: empty-name\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA: b\u{01}c\r\n\r\n", status: 400)
    }

    func testDuplicateConflictingContentLengthIsRejected() throws {
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", status: 400)
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\nabcd", status: 400)
        // Identical duplicates are harmless.
        let requests = try parseAll("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc")
        XCTAssertEqual(requests.first?.body, Array("abc".utf8))
    }

    func testNonNumericContentLengthIsRejected() {
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", status: 400)
    }

    func testContentLengthWithTransferEncodingIsRejected() {
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\ncontent-length: 0\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n", status: 400)
        // An unusable Transfer-Encoding must not let Content-Length win.
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 5\r\n\r\nabcde", status: 400)
    }

    func testUnsupportedTransferCodingsAreRejected() {
        // Not ending in chunked: the body length cannot be known, 400 (RFC 9112 §6.3).
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", status: 400)
        // Well-formed but a coding we do not decode: 501 (RFC 9112 §6.1).
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: x-custom;q=1\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501)
    }

    func testEmptyOrMalformedTransferEncodingIsRejected() {
        let bodies = "0\r\n\r\n"
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\nabc", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked,\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: , chunked\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: \"chunked\"\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked;x=1\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\u{0B}\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n" + bodies, status: 400)
    }

    func testChunkedMustBeLastAndOnlyOnce() {
        let bodies = "0\r\n\r\n"
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n" + bodies, status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + bodies,
                       status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + bodies,
                       status: 400)
    }

    func testTransferEncodingIsCaseInsensitiveAndSplitAcrossLines() throws {
        let text = "POST / HTTP/1.1\r\ntransfer-encoding: ChUnKeD\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        XCTAssertEqual(try parseAll(text).first?.body, Array("ok".utf8))
    }

    func testTransferEncodingOnHTTP10IsRejected() {
        assertRejected("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", status: 400)
    }

    func testWhitespaceBeforeColonIsRejected() {
        assertRejected("POST / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", status: 400)
    }

    func testObsoleteLineFoldingIsRejected() {
        assertRejected("GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n", status: 400)
        // Whitespace between the request line and the first field is the same thing (RFC 9112 §2.2).
        assertRejected("GET / HTTP/1.1\r\n Host: h\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n", status: 400)
    }

    func testControlBytesInFieldsAreRejected() {
        assertRejected("GET / HTTP/1.1\r\nA: b\u{00}c\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA\u{00}: b\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA\rB: b\r\n\r\n", status: 400)
        assertRejected("GET / HTTP/1.1\r\nA: b\u{7F}\r\n\r\n", status: 400)
        assertRejected("GET /\u{00} HTTP/1.1\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: \u{00}\r\n\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nNoColon\r\n\r\n", status: 400)
    }

    func testObsTextAndTabsInValuesAreAccepted() throws {
        let requests = try parseAll("GET / HTTP/1.1\r\nA: caf\u{E9}\tb\r\n\r\n")
        XCTAssertEqual(requests.first?.headers["a"], "caf\u{E9}\tb")
    }

    func testValidChunkExtensionsAreIgnored() throws {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        let lines = ["2;a\r\nok", "2 ; a = b\r\nok", "2;a=\"q \\\" ;=\"\r\nok", "2;a;b=c;d=\"\"\r\nok", "2\t;a\r\nok"]
        for line in lines {
            let requests = try parseAll(head + line + "\r\n0;last\r\n\r\n")
            XCTAssertEqual(requests.first?.body, Array("ok".utf8), line)
        }
    }

    func testInvalidChunkExtensionsAreRejected() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        for line in ["2 \r\n", "2;\r\n", "2;=b\r\n", "2;a=\r\n", "2;a=\"open\r\n", "2;a=b c\r\n", "2;a b\r\n",
                     "2;a=\"\u{01}\"\r\n", "2;a=\"\\\u{01}\"\r\n", "2;a\u{00}\r\n", "2x\r\n", "2,a\r\n", "\r\n", ";a\r\n"] {
            assertRejected(head + line + "ok\r\n0\r\n\r\n", status: 400)
        }
    }

    func testChunkExtensionBytesAreBoundedPerRequest() {
        let head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        // Each line is short, but together they pass the per-request bound.
        let line = "1;" + String(repeating: "e", count: 1000) + "\r\nx\r\n"
        assertRejected(head + String(repeating: line, count: 5) + "0\r\n\r\n", status: 400)
    }

    func testBodyIsReservedByContentLengthAndAnnounced() throws {
        var parser = makeParser()
        parser.append(Array("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc".utf8))
        guard case .needMore = try parser.next() else { return XCTFail("expected needMore") }
        XCTAssertEqual(parser.announcedBodyBytes, 10)
        parser.append(Array("defghij".utf8))
        guard case .request(let request) = try parser.next() else { return XCTFail("expected request") }
        XCTAssertEqual(request.body, Array("abcdefghij".utf8))
        XCTAssertEqual(parser.announcedBodyBytes, 0)
    }

    func testChunkSizesAreAnnouncedAsTheyArrive() throws {
        var parser = makeParser()
        parser.append(Array("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".utf8))
        guard case .needMore = try parser.next() else { return XCTFail("expected needMore") }
        XCTAssertEqual(parser.announcedBodyBytes, 5)
        parser.append(Array("cde\r\n3\r\n".utf8))
        guard case .needMore = try parser.next() else { return XCTFail("expected needMore") }
        XCTAssertEqual(parser.announcedBodyBytes, 8)
        parser.append(Array("fgh\r\n0\r\n\r\n".utf8))
        guard case .request(let request) = try parser.next() else { return XCTFail("expected request") }
        XCTAssertEqual(request.body, Array("abcdefgh".utf8))
        XCTAssertEqual(parser.announcedBodyBytes, 0)
    }

    func testOversizedHeaderSectionIsRejected() {
        let parser = makeParser(maxHeaderBytes: 64)
        assertRejected("GET / HTTP/1.1\r\nX-Long: \(String(repeating: "x", count: 100))\r\n\r\n", status: 431, parser: parser)
        // Also while the head is still incomplete (no blank line yet).
        assertRejected("GET / HTTP/1.1\r\nX-Long: \(String(repeating: "x", count: 100))", status: 431, parser: parser)
    }

    func testBodyOverLimitIsRejected() {
        let parser = makeParser(maxBodyBytes: 4)
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", status: 413, parser: parser)
        assertRejected("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", status: 413, parser: parser)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n", status: 413, parser: parser)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFFFFFF\r\n", status: 413, parser: parser)
    }

    func testMalformedChunksAreRejected() {
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: 400)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", status: 400)
        let longLine = "1;" + String(repeating: "e", count: HTTPParser.maxChunkSizeLineBytes)
        assertRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\(longLine)", status: 400)
    }
}
