#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// One connection of `ScriptedUpstreamServer`, on its own thread: reads requests in turn and plays the route.
struct ScriptedConnection {
    private let fd: Int32
    private let hits: EventCounts
    private var buffer: [UInt8] = []

    private struct Request {
        var method: String
        var target: String
        var path: String
        var query: [String: String]
        var headers: [(String, String)]
        var body: [UInt8]
    }

    init(fd: Int32, hits: EventCounts) {
        self.fd = fd
        self.hits = hits
    }

    /// Serves requests until the client leaves or a route ends the connection.
    mutating func serve() {
        while let request = readRequest() {
            guard play(request) else { return }
            if request.headers.contains(where: { $0.0.lowercased() == "connection" && $0.1.lowercased() == "close" }) { return }
        }
    }

    /// Answers one request; false when the connection must end.
    private func play(_ request: Request) -> Bool {
        let q = request.query
        let path = request.path
        if path.hasSuffix("/echo") {
            let headers = request.headers.map { "[\(quoted($0.0)), \(quoted($0.1))]" }.joined(separator: ", ")
            return sendJSON(200, #"{"method": \#(quoted(request.method)), "path": \#(quoted(request.target)), "headers": [\#(headers)], "body": \#(quoted(String(decoding: request.body, as: UTF8.self)))}"#)
        }
        if path.hasSuffix("/sse") {
            let count = Int(q["n"] ?? "3") ?? 3
            let delay = Double(q["delay"] ?? "0.1") ?? 0.1
            guard send(Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)) else { return false }
            for index in 0..<count {
                if let gate = q["gate"], index > 0, hits.wait("release:" + gate, atLeast: index) < index { break }
                guard sendChunk(Array("data: \(index)\n\n".utf8)) else { return false }
                guard pause(delay) else { return false }
            }
            return send(Array("0\r\n\r\n".utf8))
        }
        if path.hasSuffix("/flaky") {
            let hit = hits.add("flaky:" + (q["key"] ?? ""))
            let status = Int(q["status"] ?? "503") ?? 503
            if hit <= Int(q["fail"] ?? "1") ?? 1 {
                let extra = q["retry_after"].map { [("Retry-After", $0)] } ?? []
                return sendJSON(status, #"{"error": {"message": "status \#(status) on hit \#(hit)"}}"#, extra: extra)
            }
            return sendJSON(200, #"{"ok": true, "hit": \#(hit)}"#)
        }
        if path.hasSuffix("/status") {
            let hit = hits.add("status:" + (q["key"] ?? ""))
            let code = q["code"] ?? "500"
            return sendJSON(Int(code) ?? 500, #"{"error": {"message": "code \#(code)"}, "hit": \#(hit)}"#)
        }
        if path.hasSuffix("/hits") {
            return sendJSON(200, #"{"hits": \#(hits.count(q["key"] ?? ""))}"#)
        }
        if path.hasSuffix("/early") {
            guard send(Array("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n".utf8)) else { return false }
            usleep(50_000)  // the interim block arrives on its own, as from a real server that is still working
            return sendJSON(201, #"{"created": true}"#, extra: [("X-Final", "yes")])
        }
        if path.hasSuffix("/hang") {
            hits.add("hang:" + (q["key"] ?? ""))
            waitForClientToLeave()
            return false
        }
        if path.hasSuffix("/release") {
            return sendJSON(200, #"{"released": \#(hits.add("release:" + (q["key"] ?? "")))}"#)
        }
        if path.hasSuffix("/await") {
            let count = hits.wait(q["key"] ?? "", atLeast: Int(q["n"] ?? "1") ?? 1)
            return sendJSON(200, #"{"hits": \#(count)}"#)
        }
        if path.hasSuffix("/reset") {
            _ = send(Array("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".utf8))
            _ = sendChunk(Array("data: 0\n\n".utf8))
            waitUntilAcknowledged()
            usleep(50_000)  // let the client read what it has before the reset reaches it
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            return false  // the caller's close() now sends RST
        }
        return sendJSON(404, #"{"error": "no route"}"#)
    }

    // MARK: Reading

    private mutating func readRequest() -> Request? {
        var headEnd: Int?
        while headEnd == nil {
            headEnd = Self.find([13, 10, 13, 10], in: buffer)
            if headEnd == nil, !fill() { return nil }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        buffer.removeFirst(headEnd! + 4)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3 else { return nil }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name }?.1 }
        if header("expect")?.lowercased() == "100-continue" { _ = send(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)) }
        let length = Int(header("content-length") ?? "0") ?? 0
        while buffer.count < length { guard fill() else { return nil } }
        let body = Array(buffer[0..<length])
        buffer.removeFirst(length)
        let target = String(requestLine[1])
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                if query[key] == nil { query[key] = kv.count == 2 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : "" }
            }
        }
        return Request(method: String(requestLine[0]), target: target, path: String(parts[0]), query: query,
                       headers: headers, body: body)
    }

    private mutating func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65_536)
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return false }
        buffer += chunk[0..<count]
        return true
    }

    private static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    // MARK: Writing and waiting

    private func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    private func sendChunk(_ data: [UInt8]) -> Bool {
        send(Array(String(data.count, radix: 16).utf8) + [13, 10] + data + [13, 10])
    }

    private func sendJSON(_ status: Int, _ body: String, extra: [(String, String)] = []) -> Bool {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
        for (name, value) in extra { head += "\(name): \(value)\r\n" }
        return send(Array((head + "\r\n" + body).utf8))
    }

    /// Waits `seconds` (the route's pacing); false when the client left meanwhile.
    private func pause(_ seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return true }
            var entry = pollfd(fd: fd, events: Int16(POLLIN) | Self.readHangup, revents: 0)
            let ready = poll(&entry, 1, Int32(min(left * 1000, 60_000).rounded(.up)))
            if ready <= 0 { continue }
            if entry.revents & (Self.readHangup | Int16(POLLHUP) | Int16(POLLERR)) != 0 { return false }
            var byte: UInt8 = 0
            if recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) <= 0 { return false }
            usleep(UInt32(max(0, deadline.timeIntervalSinceNow) * 1_000_000))  // a pipelined request waits its turn
            return true
        }
    }

    /// Blocks until the client closes its side (or the connection fails).
    private func waitForClientToLeave() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while chunk.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, 0) }) > 0 {}
    }

    /// Waits (a second at most) until the client's TCP stack has acknowledged everything sent.
    private func waitUntilAcknowledged() {
        for _ in 0..<1000 {
            var unsent: Int32 = 0
            guard ioctl(fd, UInt(TIOCOUTQ), &unsent) == 0, unsent > 0 else { return }
            usleep(1000)
        }
    }

    /// POLLRDHUP (Linux), which Glibc's module does not export.
    private static let readHangup: Int16 = 0x2000

    private static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 429: "Too Many Requests"
        case 500: "Internal Server Error"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}

/// A JSON string literal for `text`, escaped as JSON requires.
func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}
