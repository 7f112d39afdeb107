import COpenSSL
import Foundation
@testable import FlywheelHTTP
import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// Bytes 0, 1, ... 250, 0, 1, ...: a body whose every byte is checkable (made once: debug builds are slow).
private let longPattern: [UInt8] = {
    var bytes = [UInt8](repeating: 0, count: 6 << 20)
    bytes.withUnsafeMutableBufferPointer { buffer in
        for index in buffer.indices { buffer[index] = UInt8(truncatingIfNeeded: index % 251) }
    }
    return bytes
}()

private func pattern(_ count: Int) -> ArraySlice<UInt8> {
    longPattern[0..<count]
}

/// `/big/N`: N pattern bytes; `/stream/N`: N chunks "chunk i\n"; `/later/X`: "X" answered 1 ms later;
/// `/block`: holds the loop for 300 ms first; anything else: the path.
private let tlsResponder = ClosureResponder { request, writer in
    let parts = request.path.split(separator: "/")
    switch (parts.first, parts.count > 1 ? Int(parts[1]) : nil) {
    case ("big", let count?):
        writer.send(HTTPResponse(status: 200, headers: [:], body: Array(pattern(count))))
    case ("stream", let count?):
        writer.startStream(status: 200, headers: ["Content-Type": "text/plain"])
        for index in 0..<count { writer.write(Array("chunk \(index)\n".utf8)) }
        writer.endStream()
    case ("block", _):
        usleep(300_000)
        writer.send(HTTPResponse(status: 200, headers: [:], body: Array(request.path.utf8)))
    case ("later", _):
        let body = Array(request.path.utf8)
        writer.eventLoop.schedule(afterMilliseconds: 1) {
            writer.send(HTTPResponse(status: 200, headers: [:], body: body))
        }
    default:
        writer.send(HTTPResponse(status: 200, headers: [:], body: Array(request.path.utf8)))
    }
}

/// The TLS listener end to end over loopback (a real server, an OpenSSL client), and `TLSTransport` alone over a
/// socket pair.
final class TLSServerTests: XCTestCase {
    private var files: TLSFixtureFiles!

    override func setUpWithError() throws {
        files = try TLSFixtureFiles()
    }

    override func tearDown() {
        files = nil
    }

    private func startTLSServer(handshakeTimeout: Double = 10,
                                configure: (inout HTTPServerConfiguration) -> Void = { _ in }) throws -> HTTPServer {
        let context = try files.context("a")
        return try startTestServer(responder: tlsResponder) { configuration in
            configuration.tls = context
            configuration.tlsHandshakeTimeout = handshakeTimeout
            configure(&configuration)
        }
    }

    func testKeepAliveCarriesLargeStreamedAndSmallResponsesOnOneConnection() throws {
        let server = try startTLSServer()
        defer { server.shutdown(gracePeriod: 1) }
        XCTAssertTrue(server.isTLS)
        let client = try TLSTestClient(port: server.port)
        XCTAssertEqual(client.alpn, "http/1.1")
        XCTAssertEqual(client.peerCertificate, files.der("a"))
        // 6 MiB asked for before reading anything: the server meets a full socket (WANT_WRITE) and resumes.
        try client.send("GET /big/6291456 HTTP/1.1\r\n\r\n")
        usleep(200_000)
        let big = try client.readResponses(1)[0]
        XCTAssertEqual(big.status, 200)
        XCTAssertEqual(big.body.count, 6_291_456)
        XCTAssertTrue(big.body[...] == pattern(6_291_456), "the large body arrived altered")
        try client.send("GET /stream/200 HTTP/1.1\r\n\r\n")
        let streamed = try client.readResponses(1)[0]
        XCTAssertEqual(String(decoding: streamed.body, as: UTF8.self), (0..<200).map { "chunk \($0)\n" }.joined())
        try client.send("GET /small HTTP/1.1\r\n\r\n")
        XCTAssertEqual(String(decoding: try client.readResponses(1)[0].body, as: UTF8.self), "/small")
        XCTAssertEqual(server.openConnectionCount, 1)
    }

    func testPipelinedRequestsBeyondTheReadPauseAreAllAnsweredInOrder() throws {
        let server = try startTLSServer { $0.eventLoopCount = 1 }
        defer { server.shutdown(gracePeriod: 1) }
        let client = try TLSTestClient(port: server.port)
        // Requests answered 1 ms apart, sent while the first one holds the loop, in TLS records of 7001 bytes and
        // 329,047 bytes in all (47 records). The server then reads 64 KiB at a time and pauses reading after the
        // fifth read (over 256 KiB waiting) with the socket empty and the last 1,367 bytes inside OpenSSL, which
        // no readiness event will report: reading must resume from OpenSSL itself.
        let recordSize = 7001, total = 47 * recordSize
        var batch = Array("GET /block HTTP/1.1\r\n\r\n".utf8)
        var index = 0
        func request(_ padding: Int) -> [UInt8] {
            Array("GET /later/\(index) HTTP/1.1\r\nX-Pad: \(String(repeating: "p", count: padding))\r\n\r\n".utf8)
        }
        while total - batch.count - request(280).count > request(280).count {
            batch += request(280)
            index += 1
        }
        let last = request(0)
        batch += request(total - batch.count - last.count)
        XCTAssertEqual(batch.count, total)
        try client.send(batch, recordSize: recordSize)
        let responses = try client.readResponses(index + 2)
        XCTAssertEqual(responses.map { String(decoding: $0.body, as: UTF8.self) },
                       ["/block"] + (0...index).map { "/later/\($0)" })
    }

    func testASilentOrSlowClientIsClosedAtTheHandshakeDeadlineWhileOthersAreServed() throws {
        let server = try startTLSServer(handshakeTimeout: 0.3)
        defer { server.shutdown(gracePeriod: 1) }
        let silent = try connectLoopback(port: server.port)
        defer { Glibc.close(silent) }
        let slow = try connectLoopback(port: server.port)
        defer { Glibc.close(slow) }
        sendAll(slow, [22, 3, 1])
        let client = try TLSTestClient(port: server.port)
        try client.send("GET /served HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponses(1)[0].status, 200)
        XCTAssertTrue(closedByPeer(silent), "a client that never sent its hello was kept open")
        XCTAssertTrue(closedByPeer(slow), "a client that stopped in the middle of its hello was kept open")
        XCTAssertTrue(eventually { server.openConnectionCount == 1 && server.tlsSessionCount == 1 })
        XCTAssertGreaterThanOrEqual(server.tlsHandshakeFailureCount, 2)
        // The finished handshake is not held to that deadline.
        usleep(500_000)
        try client.send("GET /still HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponses(1)[0].status, 200)
    }

    func testPlainHTTPOnTheTLSPortGetsA400AndGarbageIsClosed() throws {
        let server = try startTLSServer()
        defer { server.shutdown(gracePeriod: 1) }
        let plain = try connectLoopback(port: server.port)
        defer { Glibc.close(plain) }
        sendAll(plain, Array("GET / HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        var answer = [UInt8](repeating: 0, count: 4096)
        let count = recv(plain, &answer, answer.count, 0)
        let text = String(decoding: answer[0..<max(0, count)], as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 400 "), text)
        XCTAssertTrue(text.contains("https://"), text)
        XCTAssertTrue(closedByPeer(plain))
        for garbage: [UInt8] in [[22, 3, 1, 0, 5, 1, 2, 3, 4, 5], [0x80, 0x2e, 1, 0, 2], Array(repeating: 0, count: 64)] {
            let fd = try connectLoopback(port: server.port)
            sendAll(fd, garbage)
            XCTAssertTrue(closedByPeer(fd), "garbage \(garbage.prefix(4)) was not closed")
            Glibc.close(fd)
        }
        let client = try TLSTestClient(port: server.port)
        try client.send("GET /after HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try client.readResponses(1)[0].status, 200)
    }

    func testEverySSLIsFreedWhateverWayTheConnectionEnds() throws {
        let server = try startTLSServer(handshakeTimeout: 0.3) { $0.idleTimeout = 0.5 }
        defer { server.shutdown(gracePeriod: 1) }
        for round in 0..<20 {
            // A request and a clean close by the client.
            do {
                let client = try TLSTestClient(port: server.port)
                try client.send("GET /one HTTP/1.1\r\n\r\n")
                _ = try client.readResponses(1)
            }
            // Connection: close, answered then closed by the server with close_notify.
            do {
                let client = try TLSTestClient(port: server.port)
                try client.send("GET /two HTTP/1.1\r\nConnection: close\r\n\r\n")
                _ = try client.readResponses(1)
                XCTAssertTrue(client.sawEndOfStream())
            }
            // A client that vanishes with a large response still unread.
            do {
                let client = try TLSTestClient(port: server.port)
                try client.send("GET /big/1000000 HTTP/1.1\r\n\r\n")
            }
            // A handshake abandoned half-way, a silent client (the deadline), garbage, plain HTTP.
            let fds = try (0..<4).map { _ in try connectLoopback(port: server.port) }
            sendAll(fds[0], [22, 3, 1, 0, 200, 1])
            sendAll(fds[2], Array(repeating: 0xff, count: 32))
            sendAll(fds[3], Array("GET / HTTP/1.1\r\n\r\n".utf8))
            // Mostly the client leaves first; in the last round the server closes them (the silent one at the deadline).
            if round == 19 {
                for fd in fds { XCTAssertTrue(closedByPeer(fd)) }
            }
            for fd in fds { Glibc.close(fd) }
        }
        XCTAssertTrue(eventually(timeout: 10) { server.openConnectionCount == 0 },
                      "connections left open: \(server.openConnectionCount)")
        XCTAssertEqual(server.tlsSessionCount, 0, "SSL objects not freed")
    }

    func testReplacingTheContextServesNewConnectionsAndKeepsEstablishedOnes() throws {
        let server = try startTLSServer()
        defer { server.shutdown(gracePeriod: 1) }
        let before = try TLSTestClient(port: server.port)
        XCTAssertEqual(before.peerCertificate, files.der("a"))
        XCTAssertTrue(server.replaceTLSContext(try files.context("b")))
        let after = try TLSTestClient(port: server.port)
        XCTAssertEqual(after.peerCertificate, files.der("b"))
        try before.send("GET /old HTTP/1.1\r\n\r\n")
        XCTAssertEqual(String(decoding: try before.readResponses(1)[0].body, as: UTF8.self), "/old")
        try after.send("GET /new HTTP/1.1\r\n\r\n")
        XCTAssertEqual(String(decoding: try after.readResponses(1)[0].body, as: UTF8.self), "/new")
        // A plain server does not turn into a TLS one.
        let plain = try startTestServer()
        defer { plain.shutdown(gracePeriod: 1) }
        XCTAssertFalse(plain.replaceTLSContext(try files.context("b")))
    }

    func testOverTheConnectionLimitATLSClientGetsA503AfterItsHandshake() throws {
        let server = try startTLSServer { $0.maxConnections = 1 }
        defer { server.shutdown(gracePeriod: 1) }
        let first = try TLSTestClient(port: server.port)
        try first.send("GET /first HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try first.readResponses(1)[0].status, 200)
        let second = try TLSTestClient(port: server.port)
        let refused = try second.readResponses(1)[0]
        XCTAssertEqual(refused.status, 503)
        XCTAssertTrue(second.sawEndOfStream())
        try first.send("GET /again HTTP/1.1\r\n\r\n")
        XCTAssertEqual(try first.readResponses(1)[0].status, 200)
    }

    func testContextErrorsNameTheFileAndTheProblem() throws {
        func failure(_ configuration: TLSConfiguration) -> String {
            do {
                _ = try TLSContext(configuration)
                return "no error"
            } catch {
                return error.description
            }
        }
        let a = files.path("a.pem"), keyA = files.path("a.key"), keyB = files.path("b.key")
        XCTAssertEqual(failure(.init(certificateFile: files.path("missing.pem"), privateKeyFile: keyA)),
                       "certificate file \(files.path("missing.pem")): No such file or directory")
        XCTAssertEqual(failure(.init(certificateFile: files.directory, privateKeyFile: keyA)),
                       "certificate file \(files.directory): not a regular file")
        XCTAssertEqual(failure(.init(certificateFile: a, privateKeyFile: keyB)),
                       "key file \(keyB) does not match the certificate in \(a)")
        try files.write("garbage.pem", "not a certificate\n")
        XCTAssertTrue(failure(.init(certificateFile: files.path("garbage.pem"), privateKeyFile: keyA))
            .hasPrefix("certificate file \(files.path("garbage.pem")) holds no usable PEM certificate"))
        XCTAssertTrue(failure(.init(certificateFile: a, privateKeyFile: files.path("garbage.pem")))
            .hasPrefix("key file \(files.path("garbage.pem")) holds no usable unencrypted PEM private key"))
        XCTAssertEqual(failure(.init(certificateFile: a, privateKeyFile: keyA, clientAuthentication: .require)),
                       "client_auth require needs a client CA file")
        XCTAssertTrue(failure(.init(certificateFile: a, privateKeyFile: keyA, clientCAFile: files.path("garbage.pem"),
                                    clientAuthentication: .optional))
            .hasPrefix("client CA file \(files.path("garbage.pem")) holds no usable PEM certificate"))
        if getuid() != 0 {
            try files.write("unreadable.key", TLSFixtures.keyA)
            chmod(files.path("unreadable.key"), 0)
            XCTAssertEqual(failure(.init(certificateFile: a, privateKeyFile: files.path("unreadable.key"))),
                           "key file \(files.path("unreadable.key")): cannot read: Permission denied")
        }
        let context = try files.context("a")
        XCTAssertTrue(context.certificateSummary.hasPrefix("subject /CN=127.0.0.1/O=unit-a, serial "), context.certificateSummary)
    }
}

/// `TLSTransport` alone, over a non-blocking socket pair with a client `SSL` on the other end, both driven by hand.
final class TLSTransportTests: XCTestCase {
    private var files: TLSFixtureFiles!
    private var clientContext: OpaquePointer!
    private var client: OpaquePointer!
    private var clientDescriptor: Int32 = -1
    private var transport: TLSTransport!
    private let sessions = TLSSessionCounter()
    private var serverContext: TLSContext!

    override func setUpWithError() throws {
        files = try TLSFixtureFiles()
        serverContext = try files.context("a")
        var descriptors: [Int32] = [0, 0]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        guard socketpair(AF_UNIX, type, 0, &descriptors) == 0 else { throw SocketError(call: "socketpair", errno: errno) }
        clientDescriptor = descriptors[1]
        clientContext = SSL_CTX_new(TLS_client_method())
        client = SSL_new(clientContext)
        SSL_set_fd(client, clientDescriptor)
        SSL_set_connect_state(client)
        let server = SSL_new(serverContext.handle)!
        sessions.opened()
        SSL_set_fd(server, descriptors[0])
        SSL_set_accept_state(server)
        // Both sides in turn until both are done (each call only does what the bytes available allow).
        var clientDone = false, serverDone = false
        for _ in 0..<50 where !(clientDone && serverDone) {
            if !clientDone { clientDone = SSL_do_handshake(client) == 1 }
            if !serverDone { serverDone = SSL_do_handshake(server) == 1 }
        }
        XCTAssertTrue(clientDone && serverDone, "handshake did not finish: \(TLSContext.drainErrors())")
        transport = TLSTransport(socket: Socket(descriptor: descriptors[0]), ssl: server, liveSessions: sessions)
    }

    override func tearDown() {
        transport?.close()
        if let client { SSL_free(client) }
        if let clientContext { SSL_CTX_free(clientContext) }
        if clientDescriptor >= 0 { Glibc.close(clientDescriptor) }
        XCTAssertEqual(sessions.count, 0, "the server SSL was not freed")
    }

    /// Everything the client can read now (it also flushes what the server must answer, e.g. tickets).
    private func clientReadAll() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = SSL_read(client, &buffer, Int32(buffer.count))
            if count <= 0 { break }
            out += buffer[0..<Int(count)]
        }
        ERR_clear_error()
        return out
    }

    private func clientWrite(_ bytes: [UInt8]) {
        let written = bytes.withUnsafeBytes { SSL_write(client, $0.baseAddress, Int32($0.count)) }
        XCTAssertEqual(Int(written), bytes.count)
    }

    func testGatheredWritesArriveInOrderAndAFullSocketIsWouldBlockThenResumes() throws {
        let head = Array("head,".utf8), middle = Array("middle,".utf8), tail = Array("tail".utf8)
        let result = try head.withUnsafeBytes { a in
            try middle.withUnsafeBytes { b in
                try tail.withUnsafeBytes { c in
                    var vectors = [a, b, c].map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
                    return try vectors.withUnsafeMutableBufferPointer { try transport.write($0) }
                }
            }
        }
        guard case .processed(16) = result else { return XCTFail("expected 16 bytes taken, got \(result)") }
        XCTAssertEqual(String(decoding: clientReadAll(), as: UTF8.self), "head,middle,tail")

        // Write 4 MiB as a connection would: retry from the unsent bytes after every .wouldBlock, draining the
        // client in between. Every byte arrives once and in order.
        let total = 4 << 20
        let body = Array(pattern(total))
        var sent = 0
        var received: [UInt8] = []
        var sawWouldBlock = false
        while sent < total {
            let outcome = try body[sent...].withUnsafeBytes { try transport.write($0) }
            switch outcome {
            case .processed(let count): sent += count
            case .wouldBlock:
                sawWouldBlock = true
                received += clientReadAll()
            }
        }
        while received.count < total {
            let more = clientReadAll()
            XCTAssertFalse(more.isEmpty, "stalled at \(received.count) bytes")
            if more.isEmpty { break }
            received += more
        }
        XCTAssertTrue(sawWouldBlock, "the socket pair never filled up")
        XCTAssertTrue(received == body, "the bytes arrived altered")
    }

    func testReadsDrainOpenSSLAndReportWhatItStillHolds() throws {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        guard case .wouldBlock = try transport.read(into: buffer) else { return XCTFail("nothing was sent yet") }
        // Three records; one read with room for all returns all of them and leaves nothing behind.
        for piece in ["first,", "second,", "third"] { clientWrite(Array(piece.utf8)) }
        guard case .processed(let count) = try transport.read(into: buffer) else { return XCTFail("expected bytes") }
        XCTAssertEqual(String(decoding: buffer[0..<count], as: UTF8.self), "first,second,third")
        XCTAssertFalse(transport.hasBufferedInput)
        // A small buffer is filled and the rest is reported as held, although the socket itself is empty.
        clientWrite(Array(pattern(10_000)))
        let small = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<1000])
        guard case .processed(1000) = try transport.read(into: small) else { return XCTFail("expected a full buffer") }
        XCTAssertTrue(transport.hasBufferedInput)
        guard case .processed(9000) = try transport.read(into: buffer) else { return XCTFail("expected the rest") }
        XCTAssertFalse(transport.hasBufferedInput)
    }

    func testShutdownWriteSendsCloseNotifyAndThePeersCloseNotifyIsEndOfStream() throws {
        transport.shutdownWrite()
        var byte: UInt8 = 0
        XCTAssertEqual(SSL_read(client, &byte, 1), 0)
        XCTAssertEqual(SSL_get_error(client, 0), SSL_ERROR_ZERO_RETURN, "the client did not get close_notify")
        _ = SSL_shutdown(client)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { buffer.deallocate() }
        guard case .processed(0) = try transport.read(into: buffer) else { return XCTFail("expected end of stream") }
    }

    func testGarbageFromThePeerIsAnErrorNotACrash() throws {
        let noise = [UInt8](repeating: 0x17, count: 64)  // an application-data header, then nonsense
        _ = noise.withUnsafeBytes { send(clientDescriptor, $0.baseAddress, $0.count, 0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
        defer { buffer.deallocate() }
        XCTAssertThrowsError(try transport.read(into: buffer))
    }
}
