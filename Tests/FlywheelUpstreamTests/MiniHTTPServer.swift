import FlywheelTesting
import Glibc
import Synchronization

/// A tiny keep-alive HTTP/1.1 server (blocking sockets, one thread per connection) answering every request with
/// `{}`. Fast enough to measure the client rather than the server; used by the opt-in benchmark only.
final class MiniHTTPServer: Sendable {
    let port: Int
    private let listener: Int32

    init() throws {
        let (listener, boundPort) = try LoopbackPort.bind(listen: true)
        self.listener = listener
        port = Int(boundPort)
        let fd = listener
        Self.spawn {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 { if errno == EINTR { continue } else { return } }
                var on: Int32 = 1
                setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                Self.spawn { Self.serve(client) }
            }
        }
    }

    func stop() { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private static let response: [UInt8] = Array("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".utf8)

    private static func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var filled = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n <= 0 { return }
            filled += n
            // Answer every complete request in the buffer.
            while let headEnd = findHeadEnd(buffer, filled) {
                let bodyLength = contentLength(buffer, headEnd)
                let total = headEnd + bodyLength
                guard filled >= total else { break }
                let written = response.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
                if written <= 0 { return }
                buffer.withUnsafeMutableBytes { raw in
                    let base = raw.baseAddress!
                    memmove(base, base + total, filled - total)
                }
                filled -= total
            }
            if filled == buffer.count { return }
        }
    }

    private static func findHeadEnd(_ b: [UInt8], _ count: Int) -> Int? {
        var i = 3
        while i < count {
            if b[i] == 10, b[i - 1] == 13, b[i - 2] == 10, b[i - 3] == 13 { return i + 1 }
            i += 1
        }
        return nil
    }

    private static func contentLength(_ b: [UInt8], _ headEnd: Int) -> Int {
        let head = String(decoding: b[0..<headEnd], as: UTF8.self).lowercased()
        guard let range = head.range(of: "content-length:") else { return 0 }
        let digits = head[range.upperBound...].drop(while: { $0 == " " }).prefix(while: { $0.isNumber })
        return Int(digits) ?? 0
    }

    private final class Box: @unchecked Sendable {  // handed to exactly one new thread
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    private static func spawn(_ body: @escaping () -> Void) {
        var thread = pthread_t()
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { argument in
            Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue().body()
            return nil
        }, box)
        pthread_detach(thread)
    }
}

