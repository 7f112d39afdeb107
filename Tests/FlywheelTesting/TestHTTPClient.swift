#if canImport(Glibc)
import Glibc
#endif
import FlywheelHTTP
import Foundation

/// A small blocking HTTP/1.1 client on a raw loopback socket, for driving servers in tests exactly: keep-alive,
/// pipelining (send several requests, then read the answers), chunked bodies read chunk by chunk, SSE events
/// read one at a time, and leaving in the middle of a response. Use it from one thread.
///
/// Every read gives up after `receiveTimeout` seconds and throws: a safety net against a hung test, not a
/// timing assertion.
public final class TestHTTPClient {
    private var fd: Int32
    private var buffer: [UInt8] = []
    private var events = ServerSentEventParser()
    private var pendingEvents: [ServerSentEventParser.Event] = []
    private var streamEnded = false

    public init(port: UInt16, receiveTimeout: Double = 15) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestHTTPClientError("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw TestHTTPClientError("connect to port \(port): errno \(code)")
        }
        var on: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
        let whole = Int(receiveTimeout)
        var timeout = timeval(tv_sec: whole, tv_usec: Int((receiveTimeout - Double(whole)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    /// Closes the connection (the server sees the client leave). Idempotent.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    // MARK: Requests

    /// The bytes of one request: `Host`, and `Content-Length` when there is a body or the method is POST.
    public static func requestBytes(_ method: String, _ target: String, headers: [(String, String)] = [],
                                    body: [UInt8] = []) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        return Array(text.utf8) + body
    }

    /// A JSON POST's bytes.
    public static func postBytes(_ target: String, json: String, headers: [(String, String)] = []) -> [UInt8] {
        requestBytes("POST", target, headers: [("Content-Type", "application/json")] + headers, body: Array(json.utf8))
    }

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { throw TestHTTPClientError("send: errno \(errno)") }
            offset += sent
        }
    }

    /// Sends a request and reads its whole response.
    public func request(_ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []) throws -> TestHTTPResponse {
        try send(Self.requestBytes(method, target, headers: headers, body: body))
        return try readResponse(head: method == "HEAD")
    }

    public func get(_ target: String, headers: [(String, String)] = []) throws -> TestHTTPResponse {
        try request("GET", target, headers: headers)
    }

    public func post(_ target: String, json: String, headers: [(String, String)] = []) throws -> TestHTTPResponse {
        try send(Self.postBytes(target, json: json, headers: headers))
        return try readResponse()
    }

    // MARK: Responses

    /// Reads one whole response (the next one, when requests were pipelined). `head`: it answers a HEAD request.
    public func readResponse(head: Bool = false) throws -> TestHTTPResponse {
        var response = try readHead()
        if head || response.status == 204 || response.status == 304 { return response }
        if response.isChunked {
            while let chunk = try readChunk() { response.body += chunk }
        } else if let length = response.header("Content-Length").flatMap({ Int($0) }) {
            response.body = try take(length)
        } else {
            while try fill() {}
            response.body = buffer
            buffer = []
        }
        return response
    }

    /// Reads a response's status line and headers, leaving its body unread (then `readChunk`/`readEvent`).
    public func readHead() throws -> TestHTTPResponse {
        events = ServerSentEventParser()
        pendingEvents = []
        streamEnded = false
        while true {
            if let end = headEnd() {
                let text = String(decoding: buffer[0..<end], as: UTF8.self)
                buffer.removeFirst(end + 4)
                var lines = text.components(separatedBy: "\r\n")
                let statusLine = lines.removeFirst().split(separator: " ")
                guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
                    throw TestHTTPClientError("bad status line in \(text)")
                }
                var headers: [(name: String, value: String)] = []
                for line in lines {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
                }
                if (100..<200).contains(status) { continue }
                var response = TestHTTPResponse(status: status, headers: headers, body: [], isChunked: false)
                response.isChunked = response.header("Transfer-Encoding")?.lowercased().contains("chunked") ?? false
                return response
            }
            guard try fill() else { throw TestHTTPClientError("connection closed before a response head (\(buffer.count) bytes)") }
        }
    }

    /// The next chunk's data of a chunked body; nil after the last chunk (its trailer section is consumed).
    public func readChunk() throws -> [UInt8]? {
        let sizeLine = try readLine()
        let hex = sizeLine.split(separator: ";").first.map(String.init) ?? ""
        guard let size = Int(hex.trimmingCharacters(in: .whitespaces), radix: 16) else {
            throw TestHTTPClientError("bad chunk size line '\(sizeLine)'")
        }
        if size == 0 {
            while try !readLine().isEmpty {}
            return nil
        }
        let data = try take(size)
        guard try readLine().isEmpty else { throw TestHTTPClientError("chunk not followed by CRLF") }
        return data
    }

    /// The next server-sent event's data of a chunked event stream; nil once the stream ended.
    public func readEvent() throws -> String? {
        while pendingEvents.isEmpty {
            if streamEnded { return nil }
            guard let chunk = try readChunk() else {
                streamEnded = true
                return nil
            }
            pendingEvents += try events.feed(chunk)
        }
        return pendingEvents.removeFirst().data
    }

    /// Every remaining event's data of the stream (including `[DONE]`).
    public func readAllEvents() throws -> [String] {
        var all: [String] = []
        while let event = try readEvent() { all.append(event) }
        return all
    }

    /// True when the server closed the connection (reads end of stream with nothing buffered).
    public func serverClosed() throws -> Bool {
        if !buffer.isEmpty { return false }
        return try !fill()
    }

    // MARK: Buffer

    private func headEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4) where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }

    private func readLine() throws -> String {
        while true {
            if let newline = buffer.firstIndex(of: 10) {
                var line = Array(buffer[0..<newline])
                buffer.removeFirst(newline + 1)
                if line.last == 13 { line.removeLast() }
                return String(decoding: line, as: UTF8.self)
            }
            guard try fill() else { throw TestHTTPClientError("connection closed inside a chunked body") }
        }
    }

    private func take(_ count: Int) throws -> [UInt8] {
        while buffer.count < count {
            guard try fill() else { throw TestHTTPClientError("connection closed with \(count - buffer.count) body bytes missing") }
        }
        let bytes = Array(buffer[0..<count])
        buffer.removeFirst(count)
        return bytes
    }

    /// Reads once; false at end of stream (or reset).
    private func fill() throws -> Bool {
        guard fd >= 0 else { throw TestHTTPClientError("the client was closed") }
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 {
            buffer.append(contentsOf: chunk[0..<count])
            return true
        }
        if count == 0 || errno == ECONNRESET { return false }
        throw TestHTTPClientError("recv failed or timed out: errno \(errno)")
    }
}
