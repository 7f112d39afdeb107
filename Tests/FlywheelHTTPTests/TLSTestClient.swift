import COpenSSL
import Foundation
@testable import FlywheelHTTP
import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif

struct TLSTestError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking TCP connection to 127.0.0.1 with receive/send timeouts (for plain bytes or under a TLS client).
func connectLoopback(port: UInt16, timeout: Double = 10) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TLSTestError(description: "socket: \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        Glibc.close(fd)
        throw TLSTestError(description: "connect: \(errno)")
    }
    var limit = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1_000_000))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

/// Sends all of `bytes` on a blocking descriptor (errors ignored: the peer may be gone, which tests check otherwise).
func sendAll(_ fd: Int32, _ bytes: [UInt8]) {
    var offset = 0
    while offset < bytes.count {
        let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent <= 0 { return }
        offset += sent
    }
}

/// True when the server closes the connection (EOF or reset) within `timeout` seconds; input is discarded.
func closedByPeer(_ fd: Int32, timeout: Double = 10) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    var buffer = [UInt8](repeating: 0, count: 4096)
    while Date() < deadline {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, 100) >= 0 else { return false }
        if poller.revents == 0 { continue }
        let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if count == 0 { return true }
        if count < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return true }
    }
    return false
}

/// A blocking TLS client (OpenSSL) for tests: no certificate verification; tests compare the certificate they got.
final class TLSTestClient {
    let fd: Int32
    private let context: OpaquePointer
    private let ssl: OpaquePointer
    private var buffered: [UInt8] = []

    init(port: UInt16, timeout: Double = 10, offerALPN: Bool = true) throws {
        signal(SIGPIPE, SIG_IGN)  // OpenSSL writes without MSG_NOSIGNAL; a server that closed must not kill the tests
        fd = try connectLoopback(port: port, timeout: timeout)
        guard let context = SSL_CTX_new(TLS_client_method()), let ssl = SSL_new(context) else {
            Glibc.close(fd)
            throw TLSTestError(description: "SSL_new failed")
        }
        self.context = context
        self.ssl = ssl
        if offerALPN { _ = fw_tls_offer_http11(ssl) }
        SSL_set_fd(ssl, fd)
        ERR_clear_error()
        guard SSL_connect(ssl) == 1 else {
            // Every property is set: deinit runs after this throw and frees the SSL, the context and the socket.
            throw TLSTestError(description: "SSL_connect failed: \(TLSContext.drainErrors())")
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(context)
        Glibc.close(fd)
    }

    /// The ALPN protocol the server chose ("" for none).
    var alpn: String {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data else { return "" }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    /// DER of the certificate the server presented.
    var peerCertificate: [UInt8] {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return [] }
        defer { X509_free(certificate) }
        var out: UnsafeMutablePointer<UInt8>?
        let length = i2d_X509(certificate, &out)
        guard length > 0, let out else { return [] }
        defer { CRYPTO_free(out, nil, 0) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }

    /// Sends `bytes` in TLS records of at most `recordSize` bytes.
    func send(_ bytes: [UInt8], recordSize: Int = 16384) throws {
        var offset = 0
        while offset < bytes.count {
            ERR_clear_error()
            let end = min(bytes.count, offset + recordSize)
            let written = bytes[offset..<end].withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            guard written > 0 else { throw TLSTestError(description: "SSL_write failed: \(TLSContext.drainErrors())") }
            offset += Int(written)
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Some bytes, or [] at the end of the stream.
    func receive() throws -> [UInt8] {
        if !buffered.isEmpty {
            defer { buffered = [] }
            return buffered
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        ERR_clear_error()
        let count = SSL_read(ssl, &chunk, Int32(chunk.count))
        if count > 0 { return Array(chunk[0..<Int(count)]) }
        let error = SSL_get_error(ssl, count)
        if error == SSL_ERROR_ZERO_RETURN { return [] }
        throw TLSTestError(description: "SSL_read failed (\(error), errno \(errno)): \(TLSContext.drainErrors())")
    }

    /// True when the server sent close_notify (or closed) before any more bytes.
    func sawEndOfStream() -> Bool {
        (try? receive())?.isEmpty ?? false
    }

    /// Reads `count` responses (Content-Length or chunked bodies).
    func readResponses(_ count: Int) throws -> [(status: Int, body: [UInt8])] {
        var data = buffered
        buffered = []
        var responses: [(status: Int, body: [UInt8])] = []
        func more() throws {
            let bytes = try receive()
            guard !bytes.isEmpty else { throw TLSTestError(description: "closed after \(responses.count) of \(count) responses") }
            data += bytes
        }
        while responses.count < count {
            guard let headEnd = find(Array("\r\n\r\n".utf8), in: data, from: 0) else {
                try more()
                continue
            }
            let head = String(decoding: data[0..<headEnd], as: UTF8.self)
            let lines = head.split(separator: "\r\n")
            let status = Int(lines[0].split(separator: " ")[1]) ?? 0
            var length = 0
            var chunked = false
            for line in lines.dropFirst() {
                let parts = line.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                if parts[0] == "content-length" { length = Int(parts[1]) ?? 0 }
                if parts[0] == "transfer-encoding" && parts[1] == "chunked" { chunked = true }
            }
            var position = headEnd + 4
            var body: [UInt8] = []
            if chunked {
                while true {
                    while find([13, 10], in: data, from: position) == nil { try more() }
                    let lineEnd = find([13, 10], in: data, from: position)!
                    let size = Int(String(decoding: data[position..<lineEnd], as: UTF8.self), radix: 16) ?? 0
                    while data.count < lineEnd + 2 + size + 2 { try more() }
                    body += data[(lineEnd + 2)..<(lineEnd + 2 + size)]
                    position = lineEnd + 2 + size + 2
                    if size == 0 { break }
                }
            } else {
                while data.count < position + length { try more() }
                body = Array(data[position..<(position + length)])
                position += length
            }
            responses.append((status, body))
            data = Array(data[position...])
        }
        buffered = data
        return responses
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8], from start: Int) -> Int? {
        guard haystack.count >= needle.count, start <= haystack.count - needle.count else { return nil }
        var index = start
        while index <= haystack.count - needle.count {
            if haystack[index] == needle[0] && Array(haystack[index..<(index + needle.count)]) == needle { return index }
            index += 1
        }
        return nil
    }
}

/// The fixtures as files, and contexts built from them.
final class TLSFixtureFiles {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "flywheel-tls-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try write("a.pem", TLSFixtures.certificateA)
        try write("a.key", TLSFixtures.keyA)
        try write("b.pem", TLSFixtures.certificateB)
        try write("b.key", TLSFixtures.keyB)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: path(name), atomically: true, encoding: .utf8)
    }

    func context(_ name: String) throws -> TLSContext {
        try TLSContext(TLSConfiguration(certificateFile: path("\(name).pem"), privateKeyFile: path("\(name).key")))
    }

    /// DER of a fixture certificate, to compare with what a client was shown.
    func der(_ name: String) -> [UInt8] {
        let pem = (try? String(contentsOfFile: path("\(name).pem"), encoding: .utf8)) ?? ""
        let base64 = pem.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        return Array(Data(base64Encoded: base64) ?? Data())
    }
}
