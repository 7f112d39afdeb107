#if canImport(Glibc)
import Glibc
#endif

/// Incremental HTTP/1.1 request parser: `append` bytes as they arrive, call `next` until it says `.needMore`.
/// Works straight on its byte buffer (no Foundation), de-chunks bodies, enforces the size limits.
/// Not thread-safe: one owner (a connection, on its event loop).
///
/// Strict where leniency enables request smuggling (RFC 9112 §11.2): every line ends in CRLF (a bare LF or CR
/// is a 400), no obs-fold, no whitespace before a field's colon, no CR/LF/NUL or other controls in field names
/// or values, chunk extensions must match the grammar and stay small, and the body length must be unambiguous
/// (Content-Length and Transfer-Encoding together, differing Content-Lengths, an empty Transfer-Encoding,
/// `chunked` not last or repeated, or Transfer-Encoding on HTTP/1.0 are 400; other codings are 501).
///
/// `@_spi(Fuzzing)`: the libFuzzer harness under Fuzz/ drives it directly; everything else reaches it through
/// `HTTPServer`.
@_spi(Fuzzing) public struct HTTPParser {
    public enum Event {
        /// Nothing complete yet; append more bytes.
        case needMore
        /// The head asked for `Expect: 100-continue` and its body has not started: send "100 Continue" now.
        case continueExpected
        case request(HTTPRequest)
    }

    private enum State {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers(bytes: Int)
    }

    static let maxChunkSizeLineBytes = 4096
    /// Total bytes of chunk extensions allowed in one request (they are read and discarded).
    static let maxChunkExtensionBytes = 4096
    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")

    let maxHeaderBytes: Int
    let maxBodyBytes: Int
    /// Per-request limits below `maxBodyBytes` (see `HTTPServerConfiguration.bodyLimit`).
    let bodyLimit: (@Sendable (String, String) -> Int?)?
    /// The limit of the request whose body is being read.
    private var requestBodyLimit: Int

    private var buffer: [UInt8] = []
    /// Everything before this index has been consumed.
    private var readIndex = 0
    /// While looking for the end of a head: the next byte to examine, and where the current line began.
    private var scanIndex = 0
    private var lineStart = 0
    private var state = State.head
    private var pendingRequest: HTTPRequest?
    private var body: [UInt8] = []
    private var continueDue = false
    private var chunkExtensionBytes = 0
    /// Body bytes the current request has announced so far: its Content-Length, or the sum of the chunk sizes
    /// read. 0 between requests. The owner reserves memory for them before they arrive.
    public private(set) var announcedBodyBytes = 0

    public init(maxHeaderBytes: Int, maxBodyBytes: Int, bodyLimit: (@Sendable (String, String) -> Int?)? = nil) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
        self.bodyLimit = bodyLimit
        self.requestBodyLimit = maxBodyBytes
    }

    /// Bytes received but not consumed by a complete request yet.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// True once any byte of the next request has arrived (and until that request is complete).
    public var hasPartialRequest: Bool {
        if case .head = state { return readIndex < buffer.count }
        return true
    }

    /// Body bytes that arrive while nothing else is buffered go straight into the body (one copy, not two).
    public mutating func append(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        if readIndex == buffer.count {
            switch state {
            case .fixedBody(let remaining) where remaining > 0:
                let taken = min(remaining, rest.count)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<taken]))
                state = .fixedBody(remaining: remaining - taken)
                rest = UnsafeRawBufferPointer(rebasing: rest[taken...])
            case .chunkData(let remaining) where remaining > 0:
                let taken = min(remaining, rest.count)
                body.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[0..<taken]))
                state = .chunkData(remaining: remaining - taken)
                rest = UnsafeRawBufferPointer(rebasing: rest[taken...])
            default:
                break
            }
        }
        guard !rest.isEmpty else { return }
        compact()
        buffer.append(contentsOf: rest)
    }

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        Array(bytes).withUnsafeBytes { append($0) }
    }

    /// Frees the buffers (the connection will parse nothing more).
    mutating func discardAll() {
        buffer = []
        body = []
        readIndex = 0
        scanIndex = 0
        lineStart = 0
        pendingRequest = nil
        announcedBodyBytes = 0
        state = .head
    }

    /// Drops consumed bytes when that is cheap (all consumed) or worthwhile (most of the buffer consumed).
    private mutating func compact() {
        guard readIndex > 0 else { return }
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
        } else if readIndex >= 4096 && readIndex * 2 >= buffer.count {
            buffer.removeSubrange(0..<readIndex)
        } else {
            return
        }
        scanIndex = max(0, scanIndex - readIndex)
        lineStart = max(0, lineStart - readIndex)
        readIndex = 0
    }

    /// Advances as far as the buffered bytes allow.
    public mutating func next() throws(HTTPParserError) -> Event {
        while true {
            switch state {
            case .head:
                guard let headEnd = try findHeadEnd() else { return .needMore }
                let request = try parseHead(from: readIndex, to: headEnd)
                readIndex = headEnd
                try beginBody(of: request)
                if case .head = state { return .request(complete()) }
                if continueDue {
                    continueDue = false
                    return .continueExpected
                }

            case .fixedBody(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken < remaining {
                    state = .fixedBody(remaining: remaining - taken)
                    return .needMore
                }
                return .request(complete())

            case .chunkSize:
                guard let lineEnd = try indexOfLineEnd(limit: Self.maxChunkSizeLineBytes) else {
                    if bufferedByteCount >= Self.maxChunkSizeLineBytes {
                        throw HTTPParserError(status: 400, message: "chunk size line too long")
                    }
                    return .needMore
                }
                let size = try parseChunkSize(from: readIndex, to: lineEnd)
                readIndex = lineEnd + 2
                if size > requestBodyLimit - body.count {
                    throw HTTPParserError(status: 413, message: "request body larger than \(requestBodyLimit) bytes")
                }
                announcedBodyBytes += size
                state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)

            case .chunkData(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken < remaining {
                    state = .chunkData(remaining: remaining - taken)
                    return .needMore
                }
                state = .chunkDataEnd

            case .chunkDataEnd:
                guard bufferedByteCount >= 2 else {
                    if bufferedByteCount == 1 && buffer[readIndex] != Self.cr {
                        throw HTTPParserError(status: 400, message: "chunk data not followed by CRLF")
                    }
                    return .needMore
                }
                guard buffer[readIndex] == Self.cr, buffer[readIndex + 1] == Self.lf else {
                    throw HTTPParserError(status: 400, message: "chunk data not followed by CRLF")
                }
                readIndex += 2
                state = .chunkSize

            case .trailers(let bytes):
                guard let lineEnd = try indexOfLineEnd(limit: maxHeaderBytes - bytes + 2) else {
                    if bytes + bufferedByteCount > maxHeaderBytes {
                        throw HTTPParserError(status: 431, message: "trailer section too large")
                    }
                    return .needMore
                }
                let length = lineEnd - readIndex
                if length == 0 {
                    readIndex = lineEnd + 2
                    return .request(complete())
                }
                if bytes + length + 2 > maxHeaderBytes {
                    throw HTTPParserError(status: 431, message: "trailer section too large")
                }
                // Trailer fields are discarded, but must be well-formed like header fields.
                let lineStart = readIndex
                try buffer.withUnsafeBufferPointer { all throws(HTTPParserError) in
                    _ = try Self.parseFieldLine(all, lineStart..<lineEnd)
                }
                readIndex = lineEnd + 2
                state = .trailers(bytes: bytes + length + 2)
            }
        }
    }

    // MARK: Head

    /// Finds the index just past the empty line ending the head, scanning each byte once across calls.
    /// Every LF must follow a CR (RFC 9112 §2.2 allows a recipient to accept a bare LF; we do not, because a
    /// proxy in front of us that reads the same bytes differently is how requests get smuggled).
    private mutating func findHeadEnd() throws(HTTPParserError) -> Int? {
        if scanIndex <= readIndex {
            // RFC 9112 §2.2: ignore empty lines (CRLF) before a request line.
            while buffer.count - readIndex >= 2 && buffer[readIndex] == Self.cr && buffer[readIndex + 1] == Self.lf {
                readIndex += 2
            }
            scanIndex = readIndex
            lineStart = readIndex
            // A lone CR may begin one more empty line: decide once the next byte is here.
            if buffer.count - readIndex == 1 && buffer[readIndex] == Self.cr { return nil }
        }
        let end = buffer.count
        var index = scanIndex
        var currentLineStart = lineStart
        var headEnd: Int?
        var bareLineFeed = false
        buffer.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress else { return }
            while index < end {
                guard let hit = memchr(base + index, Int32(Self.lf), end - index) else {
                    index = end
                    return
                }
                let newline = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                guard newline > currentLineStart, bytes[newline - 1] == Self.cr else {
                    bareLineFeed = true
                    return
                }
                if newline - currentLineStart == 1 {
                    headEnd = newline + 1
                    index = newline + 1
                    return
                }
                currentLineStart = newline + 1
                index = newline + 1
            }
        }
        if bareLineFeed { throw HTTPParserError(status: 400, message: "line ending without CR") }
        scanIndex = index
        lineStart = currentLineStart
        let size = (headEnd ?? end) - readIndex
        if size > maxHeaderBytes {
            throw HTTPParserError(status: 431, message: "request header section larger than \(maxHeaderBytes) bytes")
        }
        return headEnd
    }

    private func parseHead(from start: Int, to end: Int) throws(HTTPParserError) -> HTTPRequest {
        do {
            return try buffer.withUnsafeBufferPointer { all in
                try Self.parseHead(UnsafeBufferPointer(rebasing: all[start..<end]))
            }
        } catch let error as HTTPParserError {
            throw error
        } catch {
            throw HTTPParserError(status: 400, message: "malformed request")
        }
    }

    private static func parseHead(_ bytes: UnsafeBufferPointer<UInt8>) throws(HTTPParserError) -> HTTPRequest {
        var position = 0
        func nextLine() -> Range<Int>? {
            guard position < bytes.count else { return nil }
            var newline = position
            while newline < bytes.count && bytes[newline] != lf { newline += 1 }
            var lineEnd = newline
            if lineEnd > position && bytes[lineEnd - 1] == cr { lineEnd -= 1 }
            defer { position = newline + 1 }
            return position..<lineEnd
        }
        func text(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        func malformed(_ message: String) -> HTTPParserError {
            HTTPParserError(status: 400, message: message)
        }

        // Request line: method SP request-target SP HTTP-version
        guard let requestLine = nextLine() else { throw malformed("missing request line") }
        var index = requestLine.lowerBound
        while index < requestLine.upperBound && isTokenByte(bytes[index]) { index += 1 }
        guard index > requestLine.lowerBound, index < requestLine.upperBound, bytes[index] == space else {
            throw malformed("malformed request line")
        }
        let method = text(requestLine.lowerBound..<index)
        index += 1
        let targetStart = index
        while index < requestLine.upperBound && bytes[index] > space && bytes[index] != 0x7F { index += 1 }
        guard index > targetStart, index < requestLine.upperBound, bytes[index] == space else {
            throw malformed("malformed request line")
        }
        let target = text(targetStart..<index)
        let version = try parseVersion(bytes, from: index + 1, to: requestLine.upperBound)

        var headers = HTTPHeaders()
        while let line = nextLine(), !line.isEmpty {
            let (name, value) = try parseFieldLine(bytes, line)
            headers.add(text(name), text(value))
        }
        return HTTPRequest(method: method, target: target, version: version, headers: headers, body: [],
                           remoteAddress: "", receivedAtNanos: 0)
    }

    /// One `field-name ":" OWS field-value OWS` line (without its CRLF), RFC 9112 §5: the name is a token
    /// (so whitespace before the colon is refused), a leading space or tab is obs-fold (refused, §5.2), and
    /// the value holds no controls but HTAB (CR, LF and NUL included). Returns the name and the trimmed value.
    private static func parseFieldLine(
        _ bytes: UnsafeBufferPointer<UInt8>, _ line: Range<Int>
    ) throws(HTTPParserError) -> (name: Range<Int>, value: Range<Int>) {
        func malformed(_ message: String) -> HTTPParserError {
            HTTPParserError(status: 400, message: message)
        }
        let first = bytes[line.lowerBound]
        if first == space || first == tab { throw malformed("obsolete line folding in a field") }
        var colon = line.lowerBound
        while colon < line.upperBound && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
        guard colon < line.upperBound else { throw malformed("field line without a colon") }
        guard colon > line.lowerBound else { throw malformed("empty field name") }
        for nameIndex in line.lowerBound..<colon where !isTokenByte(bytes[nameIndex]) {
            throw malformed("invalid character in field name")
        }
        var valueStart = colon + 1
        var valueEnd = line.upperBound
        while valueStart < valueEnd && (bytes[valueStart] == space || bytes[valueStart] == tab) { valueStart += 1 }
        while valueEnd > valueStart && (bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab) { valueEnd -= 1 }
        for valueIndex in valueStart..<valueEnd {
            let byte = bytes[valueIndex]
            if (byte < space && byte != tab) || byte == 0x7F { throw malformed("invalid character in field value") }
        }
        return (line.lowerBound..<colon, valueStart..<valueEnd)
    }

    private static func parseVersion(
        _ bytes: UnsafeBufferPointer<UInt8>, from start: Int, to end: Int
    ) throws(HTTPParserError) -> HTTPVersion {
        let prefix: StaticString = "HTTP/"
        let hasPrefix = end - start >= 5 && prefix.withUTF8Buffer { expected in
            (0..<5).allSatisfy { bytes[start + $0] == expected[$0] }
        }
        guard hasPrefix else { throw HTTPParserError(status: 400, message: "malformed HTTP version") }
        func digit(_ index: Int) -> Int? {
            let byte = bytes[index]
            return byte >= 48 && byte <= 57 ? Int(byte - 48) : nil
        }
        guard end - start == 8, let major = digit(start + 5), bytes[start + 6] == UInt8(ascii: "."),
              let minor = digit(start + 7) else {
            throw HTTPParserError(status: 400, message: "malformed HTTP version")
        }
        guard major == 1, minor <= 1 else {
            throw HTTPParserError(status: 505, message: "HTTP version \(major).\(minor) is not supported")
        }
        return HTTPVersion(major: major, minor: minor)
    }

    /// RFC 9110 `tchar`.
    @inline(__always)
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    // MARK: Body framing

    /// Decides how the body is delimited (RFC 9112 §6.3) and sets the state accordingly.
    private mutating func beginBody(of request: HTTPRequest) throws(HTTPParserError) {
        var contentLength: Int?
        var transferCodings: [Substring] = []
        var hasTransferEncoding = false
        var expectsContinue = false
        for (name, value) in request.headers {
            if HTTPHeaders.equalsIgnoringCase(name, "Content-Length") {
                for piece in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let length = try parseContentLength(piece)
                    if let previous = contentLength, previous != length {
                        throw HTTPParserError(status: 400, message: "conflicting Content-Length values")
                    }
                    contentLength = length
                }
            } else if HTTPHeaders.equalsIgnoringCase(name, "Transfer-Encoding") {
                hasTransferEncoding = true
                // Empty list elements are legal in general (RFC 9110 §5.6.1) but have no business here: refused.
                for piece in value.split(separator: ",", omittingEmptySubsequences: false) {
                    let coding = Self.trimmed(piece)
                    guard !coding.isEmpty else {
                        throw HTTPParserError(status: 400, message: "empty Transfer-Encoding")
                    }
                    transferCodings.append(coding)
                }
            } else if HTTPHeaders.equalsIgnoringCase(name, "Expect") {
                expectsContinue = HTTPHeaders.equalsIgnoringCase(Self.trimmed(Substring(value)).utf8, "100-continue".utf8)
            }
        }
        pendingRequest = request
        body = []
        chunkExtensionBytes = 0
        // Asked only of requests that have a body: most (GETs, health checks) do not.
        if hasTransferEncoding || (contentLength ?? 0) > 0 {
            requestBodyLimit = min(maxBodyBytes, max(0, bodyLimit?(request.method, request.path) ?? maxBodyBytes))
        }
        if hasTransferEncoding {
            try Self.checkTransferCodings(transferCodings, version: request.version, hasContentLength: contentLength != nil)
            announcedBodyBytes = 0
            state = .chunkSize
        } else if let length = contentLength, length > 0 {
            if length > requestBodyLimit {
                throw HTTPParserError(status: 413, message: "request body larger than \(requestBodyLimit) bytes")
            }
            announcedBodyBytes = length
            body.reserveCapacity(length)
            state = .fixedBody(remaining: length)
        } else {
            state = .head
            return
        }
        continueDue = expectsContinue && request.version == .http1_1 && bufferedByteCount == 0
    }

    /// RFC 9112 §6.1 and §6.3: `chunked` exactly once and last, nothing else we could decode, never with
    /// Content-Length, never on HTTP/1.0. Framing doubts are 400 (and the connection closes); a well-formed
    /// coding we do not implement is 501.
    private static func checkTransferCodings(
        _ codings: [Substring], version: HTTPVersion, hasContentLength: Bool
    ) throws(HTTPParserError) {
        func malformed(_ message: String) -> HTTPParserError {
            HTTPParserError(status: 400, message: message)
        }
        if hasContentLength { throw malformed("both Content-Length and Transfer-Encoding") }
        if version == .http1_0 { throw malformed("Transfer-Encoding in an HTTP/1.0 request") }
        var chunkedCount = 0
        var hasOtherCoding = false
        for coding in codings {
            // transfer-coding = token *( OWS ";" OWS transfer-parameter )
            let name = trimmed(coding.prefix(while: { $0 != ";" }))
            guard !name.isEmpty, name.utf8.allSatisfy(isTokenByte) else {
                throw malformed("malformed Transfer-Encoding")
            }
            if HTTPHeaders.equalsIgnoringCase(name.utf8, "chunked".utf8) {
                guard name.endIndex == coding.endIndex else { throw malformed("chunked takes no parameters") }
                chunkedCount += 1
            } else {
                hasOtherCoding = true
            }
        }
        guard let last = codings.last, HTTPHeaders.equalsIgnoringCase(last.utf8, "chunked".utf8) else {
            throw malformed("chunked must be the final transfer coding")
        }
        if chunkedCount > 1 { throw malformed("chunked applied more than once") }
        if hasOtherCoding { throw HTTPParserError(status: 501, message: "unsupported transfer coding") }
    }

    /// Digits only; values past the body limit saturate (they are refused with 413 afterwards).
    private func parseContentLength(_ text: Substring) throws(HTTPParserError) -> Int {
        let digits = Self.trimmed(text).utf8
        guard !digits.isEmpty else { throw HTTPParserError(status: 400, message: "empty Content-Length") }
        var value = 0
        for byte in digits {
            guard byte >= 48 && byte <= 57 else {
                throw HTTPParserError(status: 400, message: "non-numeric Content-Length")
            }
            if value <= maxBodyBytes { value = value * 10 + Int(byte - 48) }
        }
        return value
    }

    /// `chunk-size [ chunk-ext ]` up to `end` (the CR). RFC 9112 §7.1.1:
    /// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, a name being a token and a
    /// value a token or quoted-string. Extensions are checked, counted against `maxChunkExtensionBytes`, ignored.
    private mutating func parseChunkSize(from start: Int, to end: Int) throws(HTTPParserError) -> Int {
        let invalid = HTTPParserError(status: 400, message: "invalid chunk size line")
        var index = start
        var size = 0
        while index < end, let digit = Self.hexValue(buffer[index]) {
            if size <= maxBodyBytes { size = size * 16 + digit }
            index += 1
        }
        guard index > start else { throw invalid }
        let extensionStart = index
        func skipWhitespace() {
            while index < end && (buffer[index] == Self.space || buffer[index] == Self.tab) { index += 1 }
        }
        func skipToken() -> Bool {
            let tokenStart = index
            while index < end && Self.isTokenByte(buffer[index]) { index += 1 }
            return index > tokenStart
        }
        while index < end {
            skipWhitespace()
            guard index < end, buffer[index] == UInt8(ascii: ";") else { throw invalid }
            index += 1
            skipWhitespace()
            guard skipToken() else { throw invalid }
            let afterName = index
            skipWhitespace()
            guard index < end, buffer[index] == UInt8(ascii: "=") else {
                index = afterName
                continue
            }
            index += 1
            skipWhitespace()
            if index < end && buffer[index] == UInt8(ascii: "\"") {
                index = try Self.endOfQuotedString(buffer, from: index, to: end)
            } else {
                guard skipToken() else { throw invalid }
            }
        }
        chunkExtensionBytes += end - extensionStart
        if chunkExtensionBytes > Self.maxChunkExtensionBytes {
            throw HTTPParserError(status: 400, message: "chunk extensions longer than \(Self.maxChunkExtensionBytes) bytes")
        }
        return size
    }

    /// The index after the closing quote of the quoted-string opening at `start` (RFC 9110 §5.6.4).
    private static func endOfQuotedString(_ bytes: [UInt8], from start: Int, to end: Int) throws(HTTPParserError) -> Int {
        var index = start + 1
        while index < end {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                return index + 1
            case UInt8(ascii: "\\"):
                // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
                guard index + 1 < end, bytes[index + 1] == tab || (bytes[index + 1] >= space && bytes[index + 1] != 0x7F) else {
                    throw HTTPParserError(status: 400, message: "invalid quoted-pair in chunk extension")
                }
                index += 2
            case tab, space...0x7E, 0x80...0xFF:
                index += 1
            default:
                throw HTTPParserError(status: 400, message: "invalid character in chunk extension")
            }
        }
        throw HTTPParserError(status: 400, message: "unterminated quoted-string in chunk extension")
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: return Int(byte - 48)
        case 65...70: return Int(byte - 55)
        case 97...102: return Int(byte - 87)
        default: return nil
        }
    }

    /// The index of the CR of the next CRLF within `limit` bytes of `readIndex`, or nil. A LF without a CR
    /// before it is refused.
    private func indexOfLineEnd(limit: Int) throws(HTTPParserError) -> Int? {
        let end = min(buffer.count, readIndex + max(limit, 0))
        var index = readIndex
        while index < end {
            if buffer[index] == Self.lf {
                guard index > readIndex, buffer[index - 1] == Self.cr else {
                    throw HTTPParserError(status: 400, message: "line ending without CR")
                }
                return index - 1
            }
            index += 1
        }
        return nil
    }

    /// Moves up to `wanted` buffered bytes into the body; returns how many.
    private mutating func takeBody(upTo wanted: Int) -> Int {
        let count = min(wanted, bufferedByteCount)
        if count > 0 {
            body.append(contentsOf: buffer[readIndex..<(readIndex + count)])
            readIndex += count
        }
        return count
    }

    private mutating func complete() -> HTTPRequest {
        guard var request = pendingRequest else { preconditionFailure("complete() without a parsed head") }
        pendingRequest = nil
        request.body = body
        body = []
        announcedBodyBytes = 0
        state = .head
        scanIndex = readIndex
        lineStart = readIndex
        return request
    }

    private static func trimmed(_ text: Substring) -> Substring {
        var slice = text
        while let first = slice.utf8.first, first == space || first == tab { slice = slice.dropFirst() }
        while let last = slice.utf8.last, last == space || last == tab { slice = slice.dropLast() }
        return slice
    }
}
