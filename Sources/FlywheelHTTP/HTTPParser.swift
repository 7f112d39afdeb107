#if canImport(Glibc)
import Glibc
#endif

/// Incremental HTTP/1.1 request parser: `append` bytes as they arrive, call `next` until it says `.needMore`.
/// Works straight on its byte buffer (no Foundation), de-chunks bodies, enforces the size limits.
/// Not thread-safe: one owner (a connection, on its event loop).
struct HTTPParser {
    enum Event {
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
    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")
    private static let space = UInt8(ascii: " ")
    private static let tab = UInt8(ascii: "\t")

    let maxHeaderBytes: Int
    let maxBodyBytes: Int

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

    init(maxHeaderBytes: Int, maxBodyBytes: Int) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxBodyBytes = maxBodyBytes
    }

    /// Bytes received but not consumed by a complete request yet.
    var bufferedByteCount: Int { buffer.count - readIndex }

    /// True once any byte of the next request has arrived (and until that request is complete).
    var hasPartialRequest: Bool {
        if case .head = state { return readIndex < buffer.count }
        return true
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        compact()
        buffer.append(contentsOf: bytes)
    }

    mutating func append(_ bytes: some Sequence<UInt8>) {
        compact()
        buffer.append(contentsOf: bytes)
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
    mutating func next() throws(HTTPParserError) -> Event {
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
                guard let lineEnd = indexOfLineFeed(limit: Self.maxChunkSizeLineBytes) else {
                    if bufferedByteCount >= Self.maxChunkSizeLineBytes {
                        throw HTTPParserError(status: 400, message: "chunk size line too long")
                    }
                    return .needMore
                }
                let size = try parseChunkSize(from: readIndex, to: lineEnd)
                readIndex = lineEnd + 1
                if size > maxBodyBytes - body.count {
                    throw HTTPParserError(status: 413, message: "request body larger than \(maxBodyBytes) bytes")
                }
                state = size == 0 ? .trailers(bytes: 0) : .chunkData(remaining: size)

            case .chunkData(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken < remaining {
                    state = .chunkData(remaining: remaining - taken)
                    return .needMore
                }
                state = .chunkDataEnd

            case .chunkDataEnd:
                guard bufferedByteCount > 0 else { return .needMore }
                if buffer[readIndex] == Self.lf {
                    readIndex += 1
                } else if buffer[readIndex] == Self.cr {
                    guard bufferedByteCount >= 2 else { return .needMore }
                    guard buffer[readIndex + 1] == Self.lf else {
                        throw HTTPParserError(status: 400, message: "chunk data not followed by CRLF")
                    }
                    readIndex += 2
                } else {
                    throw HTTPParserError(status: 400, message: "chunk data not followed by CRLF")
                }
                state = .chunkSize

            case .trailers(let bytes):
                guard let lineEnd = indexOfLineFeed(limit: maxHeaderBytes - bytes + 2) else {
                    if bytes + bufferedByteCount > maxHeaderBytes {
                        throw HTTPParserError(status: 431, message: "trailer section too large")
                    }
                    return .needMore
                }
                var length = lineEnd - readIndex
                if length > 0 && buffer[lineEnd - 1] == Self.cr { length -= 1 }
                readIndex = lineEnd + 1
                if length == 0 { return .request(complete()) }
                state = .trailers(bytes: bytes + length + 2)
                if bytes + length + 2 > maxHeaderBytes {
                    throw HTTPParserError(status: 431, message: "trailer section too large")
                }
            }
        }
    }

    // MARK: Head

    /// Finds the index just past the empty line ending the head, scanning each byte once across calls.
    private mutating func findHeadEnd() throws(HTTPParserError) -> Int? {
        if scanIndex <= readIndex {
            // RFC 9112 §2.2: ignore empty lines before a request line.
            while readIndex < buffer.count, buffer[readIndex] == Self.cr || buffer[readIndex] == Self.lf {
                readIndex += 1
            }
            scanIndex = readIndex
            lineStart = readIndex
        }
        let end = buffer.count
        var index = scanIndex
        var currentLineStart = lineStart
        var headEnd: Int?
        buffer.withUnsafeBufferPointer { bytes in
            guard let base = bytes.baseAddress else { return }
            while index < end {
                guard let hit = memchr(base + index, Int32(Self.lf), end - index) else {
                    index = end
                    return
                }
                let newline = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
                let length = newline - currentLineStart
                if length == 0 || (length == 1 && bytes[currentLineStart] == Self.cr) {
                    headEnd = newline + 1
                    index = newline + 1
                    return
                }
                currentLineStart = newline + 1
                index = newline + 1
            }
        }
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
            let first = bytes[line.lowerBound]
            if first == space || first == tab { throw malformed("obsolete header line folding") }
            var colon = line.lowerBound
            while colon < line.upperBound && bytes[colon] != UInt8(ascii: ":") { colon += 1 }
            guard colon < line.upperBound else { throw malformed("header line without a colon") }
            guard colon > line.lowerBound else { throw malformed("empty header name") }
            for nameIndex in line.lowerBound..<colon where !isTokenByte(bytes[nameIndex]) {
                throw malformed("invalid character in header name")
            }
            var valueStart = colon + 1
            var valueEnd = line.upperBound
            while valueStart < valueEnd && (bytes[valueStart] == space || bytes[valueStart] == tab) { valueStart += 1 }
            while valueEnd > valueStart && (bytes[valueEnd - 1] == space || bytes[valueEnd - 1] == tab) { valueEnd -= 1 }
            for valueIndex in valueStart..<valueEnd {
                let byte = bytes[valueIndex]
                if (byte < space && byte != tab) || byte == 0x7F { throw malformed("invalid character in header value") }
            }
            headers.add(text(line.lowerBound..<colon), text(valueStart..<valueEnd))
        }
        return HTTPRequest(method: method, target: target, version: version, headers: headers, body: [],
                           remoteAddress: "", receivedAtNanos: 0)
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
                transferCodings += value.split(separator: ",").map { Self.trimmed($0) }
            } else if HTTPHeaders.equalsIgnoringCase(name, "Expect") {
                expectsContinue = HTTPHeaders.equalsIgnoringCase(Self.trimmed(Substring(value)).utf8, "100-continue".utf8)
            }
        }
        pendingRequest = request
        body = []
        if !transferCodings.isEmpty {
            if contentLength != nil {
                throw HTTPParserError(status: 400, message: "both Content-Length and Transfer-Encoding")
            }
            guard let last = transferCodings.last, HTTPHeaders.equalsIgnoringCase(last.utf8, "chunked".utf8) else {
                throw HTTPParserError(status: 400, message: "chunked must be the final transfer coding")
            }
            guard transferCodings.count == 1 else {
                throw HTTPParserError(status: 501, message: "unsupported transfer coding")
            }
            state = .chunkSize
        } else if let length = contentLength, length > 0 {
            if length > maxBodyBytes {
                throw HTTPParserError(status: 413, message: "request body larger than \(maxBodyBytes) bytes")
            }
            state = .fixedBody(remaining: length)
        } else {
            state = .head
            return
        }
        continueDue = expectsContinue && request.version == .http1_1 && bufferedByteCount == 0
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

    /// chunk-size [ chunk-ext ] — extensions are tolerated and ignored.
    private func parseChunkSize(from start: Int, to newline: Int) throws(HTTPParserError) -> Int {
        var end = newline
        if end > start && buffer[end - 1] == Self.cr { end -= 1 }
        var index = start
        var size = 0
        while index < end, let digit = Self.hexValue(buffer[index]) {
            if size <= maxBodyBytes { size = size * 16 + digit }
            index += 1
        }
        guard index > start else { throw HTTPParserError(status: 400, message: "invalid chunk size") }
        while index < end && (buffer[index] == Self.space || buffer[index] == Self.tab) { index += 1 }
        guard index == end || buffer[index] == UInt8(ascii: ";") else {
            throw HTTPParserError(status: 400, message: "invalid chunk size")
        }
        return size
    }

    private static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case 48...57: return Int(byte - 48)
        case 65...70: return Int(byte - 55)
        case 97...102: return Int(byte - 87)
        default: return nil
        }
    }

    /// The index of the next LF within `limit` bytes of `readIndex`, or nil.
    private func indexOfLineFeed(limit: Int) -> Int? {
        let end = min(buffer.count, readIndex + max(limit, 0))
        var index = readIndex
        while index < end {
            if buffer[index] == Self.lf { return index }
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
