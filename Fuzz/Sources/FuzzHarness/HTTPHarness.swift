@_spi(Fuzzing) import FlywheelHTTP

/// The HTTP/1.1 request parser over arbitrary bytes (pipelined requests, chunked bodies, trailers).
///
/// Input: one byte of configuration (limits, a per-path body limit, how the bytes are cut into reads),
/// then the bytes a client sends. Invariants:
/// - the same requests come out, and the stream is refused or not, however the bytes are cut into reads;
/// - every request is well-formed: a token method, a target without spaces or controls, HTTP/1.0 or 1.1,
///   token field names, field values without controls (CR, LF, NUL) or surrounding whitespace;
/// - bodies respect the limits and the framing: a Content-Length body has exactly that many bytes,
///   Content-Length and Transfer-Encoding never come together;
/// - what the parser holds stays bounded by what it was given, the announced body by the body limit;
/// - a request written back out (with a Content-Length body) parses to the same request.
enum HTTPHarness {
    /// What a request carried, comparable.
    struct Snapshot: Equatable {
        var method: String
        var target: String
        var version: String
        var headers: [String]
        var body: [UInt8]

        init(_ request: HTTPRequest) {
            method = request.method
            target = request.target
            version = request.version.description
            headers = request.headers.map { "\($0.name): \($0.value)" }
            body = request.body
        }
    }

    struct Outcome {
        var requests: [HTTPRequest] = []
        var error: HTTPParserError?
    }

    struct Limits {
        var maxHeaderBytes: Int
        var maxBodyBytes: Int
        var smallPathLimit: Int?

        func makeParser() -> HTTPParser {
            var bodyLimit: (@Sendable (String, String) -> Int?)?
            if let limit = smallPathLimit {
                bodyLimit = { _, path in path == "/small" ? limit : nil }
            }
            return HTTPParser(maxHeaderBytes: maxHeaderBytes, maxBodyBytes: maxBodyBytes, bodyLimit: bodyLimit)
        }

        /// The body limit the parser must apply to a request to `path`.
        func bodyLimit(path: String) -> Int {
            if let smallPathLimit, path == "/small" { return min(maxBodyBytes, max(0, smallPathLimit)) }
            return maxBodyBytes
        }
    }

    static func run(_ data: [UInt8]) {
        var config = FuzzBytes(data)
        let byte = config.byte()
        let limits = Limits(
            maxHeaderBytes: [64, 512, 4096, 16 * 1024][Int(byte & 3)],
            maxBodyBytes: [0, 16, 300, 1 << 20][Int((byte >> 2) & 3)],
            smallPathLimit: byte & 0x10 != 0 ? 8 : nil)
        let input = Array(config.rest)

        let whole = parse(input, limits: limits, pieceSizes: { input.count })
        // Reads of 1, 2, 3, ... bytes, or all single bytes, or a size picked by the configuration byte.
        let style = Int(byte >> 5)
        var step = 0
        let cut = parse(input, limits: limits, pieceSizes: {
            step += 1
            switch style {
            case 0: return 1
            case 1: return step % 7 + 1
            default: return style * style * 3
            }
        })

        check(whole.requests.map(Snapshot.init) == cut.requests.map(Snapshot.init),
              "requests differ with the bytes cut into reads (style \(style))")
        check((whole.error == nil) == (cut.error == nil),
              "refused one way but not the other: \(String(describing: whole.error)) vs \(String(describing: cut.error))")

        for request in whole.requests {
            checkWellFormed(request, limits: limits)
            checkRoundTrip(request)
        }
    }

    /// Feeds `input` in reads of `pieceSizes()` bytes, calling `next` until it needs more, as a connection does.
    static func parse(_ input: [UInt8], limits: Limits, pieceSizes: () -> Int) -> Outcome {
        var parser = limits.makeParser()
        var outcome = Outcome()
        var offset = 0
        while offset < input.count {
            let end = min(input.count, offset + max(1, pieceSizes()))
            input[offset..<end].withUnsafeBytes { parser.append($0) }
            offset = end
            do {
                reading: while true {
                    switch try parser.next() {
                    case .needMore: break reading
                    case .continueExpected: continue
                    case .request(let request): outcome.requests.append(request)
                    }
                }
            } catch {
                check([400, 413, 431, 501, 505].contains(error.status), "unexpected status \(error.status)")
                check(!error.message.isEmpty, "an error without a message")
                outcome.error = error
                return outcome
            }
            check(parser.bufferedByteCount <= offset, "holds \(parser.bufferedByteCount) bytes of \(offset) given")
            check(parser.announcedBodyBytes <= limits.maxBodyBytes,
                  "announced \(parser.announcedBodyBytes) body bytes, limit \(limits.maxBodyBytes)")
        }
        return outcome
    }

    static func checkWellFormed(_ request: HTTPRequest, limits: Limits) {
        check(!request.method.isEmpty && request.method.utf8.allSatisfy(isTokenByte), "method \(request.method.debugDescription)")
        check(!request.target.isEmpty && request.target.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7F },
              "target \(request.target.debugDescription)")
        check(request.version == .http1_0 || request.version == .http1_1, "version \(request.version)")
        var contentLength: Int?
        var chunked = false
        for (name, value) in request.headers {
            check(!name.isEmpty && name.utf8.allSatisfy(isTokenByte), "field name \(name.debugDescription)")
            check(value.utf8.allSatisfy { ($0 >= 0x20 || $0 == 0x09) && $0 != 0x7F }, "field value \(value.debugDescription)")
            check(value.utf8.first.map { $0 != 0x20 && $0 != 0x09 } ?? true
                  && value.utf8.last.map { $0 != 0x20 && $0 != 0x09 } ?? true, "untrimmed value \(value.debugDescription)")
            if name.lowercased() == "content-length" {
                let lengths = value.split(separator: ",", omittingEmptySubsequences: false)
                    .map { Int($0.trimmingSpacesAndTabs()) }
                for length in lengths {
                    check(length != nil, "accepted Content-Length \(value.debugDescription)")
                    check(contentLength == nil || contentLength == length, "conflicting Content-Length accepted")
                    contentLength = length
                }
            }
            if name.lowercased() == "transfer-encoding" { chunked = true }
        }
        check(!(chunked && contentLength != nil), "Content-Length and Transfer-Encoding together")
        check(!(chunked && request.version == .http1_0), "Transfer-Encoding on HTTP/1.0")
        if let contentLength { check(request.body.count == contentLength, "body \(request.body.count) != \(contentLength)") }
        if !chunked && contentLength == nil { check(request.body.isEmpty, "a body without framing") }
        check(request.body.count <= limits.bodyLimit(path: request.path),
              "body of \(request.body.count) bytes past the limit \(limits.bodyLimit(path: request.path))")
    }

    /// Writes the request back out with its body framed by Content-Length and parses it again.
    static func checkRoundTrip(_ request: HTTPRequest) {
        func unframed(_ headers: [String]) -> [String] {
            headers.filter {
                let name = $0.prefix { $0 != ":" }.lowercased()
                return name != "content-length" && name != "transfer-encoding"
            }
        }
        var text = "\(request.method) \(request.target) \(request.version)\r\n"
        for (name, value) in request.headers {
            let lowered = name.lowercased()
            if lowered == "content-length" || lowered == "transfer-encoding" { continue }
            text += "\(name): \(value)\r\n"
        }
        if !request.body.isEmpty { text += "Content-Length: \(request.body.count)\r\n" }
        text += "\r\n"
        let bytes = Array(text.utf8) + request.body

        let limits = Limits(maxHeaderBytes: bytes.count + 16, maxBodyBytes: request.body.count, smallPathLimit: nil)
        let again = parse(bytes, limits: limits, pieceSizes: { bytes.count })
        check(again.error == nil, "written back, refused: \(String(describing: again.error))")
        check(again.requests.count == 1, "written back, \(again.requests.count) requests")
        guard let reparsed = again.requests.first else { return }
        var expected = Snapshot(request)
        var actual = Snapshot(reparsed)
        expected.headers = unframed(expected.headers)
        actual.headers = unframed(actual.headers)
        check(expected == actual, "written back, parsed differently")
    }

    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }
}

extension Substring {
    func trimmingSpacesAndTabs() -> Substring {
        var slice = self
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return slice
    }
}
