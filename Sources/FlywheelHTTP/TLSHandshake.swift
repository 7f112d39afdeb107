import COpenSSL
import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Counts the `SSL` objects alive on a server (handshaking or carrying a connection), so tests and metrics can
/// see that every one is freed. Any thread.
final class TLSSessionCounter: Sendable {
    private let live = Atomic<Int>(0)
    /// Handshakes that failed (bad or foreign bytes, no certificate where one is required...) or ran out of time.
    let failedHandshakes = Atomic<Int>(0)

    var count: Int { live.load(ordering: .relaxed) }
    func opened() { live.add(1, ordering: .relaxed) }
    func released() { live.subtract(1, ordering: .relaxed) }
}

/// The server side of one TLS handshake on an accepted socket, before there is a `Connection`: an event-loop
/// handler of its own, so the connection's HTTP states need no handshake state, and the limits of a handshake
/// are its own. Loop thread only.
///
/// - `SSL_do_handshake` runs whenever the socket is ready as it asked: WANT_READ waits for input, WANT_WRITE for
///   output (level-triggered epoll, so nothing is lost between calls).
/// - A client that has not finished by the handshake deadline (silent, slow, stuck) is closed, so it holds a
///   connection slot for that long at most.
/// - The first byte decides what the client speaks: a TLS handshake record starts with 22; a letter is someone
///   speaking plain HTTP to this port, who gets a short plain-text 400 saying to use https (through a plain
///   `Connection`, which lingers so the answer is read); anything else is closed at once.
/// - Done: the socket, with its registration, passes to a `Connection` over a `TLSTransport`. Failed: the `SSL` is
///   freed and the socket closed, counted in `failedHandshakes`.
final class TLSHandshake: EventLoopHandler {
    private static let tlsHandshakeRecord: UInt8 = 22

    private let socket: Socket
    private var ssl: OpaquePointer?
    private let context: HTTPLoopContext
    private let sessions: TLSSessionCounter
    private let remoteAddress: String
    private let rejectStatus: Int?
    private let deadlineNanos: UInt64
    private var interest: EpollEvents = [.input, .readHangup]
    private var sawFirstByte = false
    private var finished = false

    private var server: HTTPServerState { context.server }

    private init(socket: Socket, ssl: OpaquePointer, context: HTTPLoopContext, sessions: TLSSessionCounter,
                 remoteAddress: String, rejectStatus: Int?, deadlineNanos: UInt64) {
        self.socket = socket
        self.ssl = ssl
        self.context = context
        self.sessions = sessions
        self.remoteAddress = remoteAddress
        self.rejectStatus = rejectStatus
        self.deadlineNanos = deadlineNanos
    }

    /// Takes an accepted socket (already counted in `openConnections`) on the current loop and waits for the
    /// client's hello. `rejectStatus`: after the handshake the connection only answers that error.
    static func start(socket: Socket, tls: TLSContext, context: HTTPLoopContext, remoteAddress: String,
                      rejectStatus: Int? = nil) {
        let server = context.server
        ERR_clear_error()
        guard let ssl = SSL_new(tls.handle) else {
            ERR_clear_error()
            socket.close()
            server.openConnections.subtract(1, ordering: .relaxed)
            return
        }
        server.tlsSessions.opened()
        guard SSL_set_fd(ssl, socket.descriptor) == 1 else {
            ERR_clear_error()
            SSL_free(ssl)
            server.tlsSessions.released()
            socket.close()
            server.openConnections.subtract(1, ordering: .relaxed)
            return
        }
        SSL_set_accept_state(ssl)
        let deadline = MonotonicClock.now() &+ server.tlsHandshakeTimeoutNanos
        let handshake = TLSHandshake(socket: socket, ssl: ssl, context: context, sessions: server.tlsSessions,
                                     remoteAddress: remoteAddress, rejectStatus: rejectStatus, deadlineNanos: deadline)
        do {
            try socket.setNoDelay()
            try context.loop.register(handshake, descriptor: socket.descriptor, events: handshake.interest)
        } catch {
            handshake.fail(counted: false)
        }
    }

    // MARK: EventLoopHandler

    func handleEvents(_ events: EpollEvents) {
        guard !finished else { return }
        if events.contains(.error) || events.contains(.hangup)
            || (events.contains(.readHangup) && !events.contains(.input) && !events.contains(.output)) {
            fail()
            return
        }
        if !sawFirstByte {
            guard classifyFirstByte() else { return }
        }
        advance()
    }

    func tick(nowNanos now: UInt64) {
        guard !finished else { return }
        if now >= deadlineNanos || server.isDraining.load(ordering: .relaxed) || server.isForceClosing.load(ordering: .relaxed) {
            fail()
        }
    }

    func loopWillStop() {
        guard !finished else { return }
        fail(counted: false)
    }

    // MARK: Private

    /// Peeks at the first byte. True to go on with the handshake; false when it is not here yet or the socket
    /// went elsewhere (closed, or handed to a plain connection for the 400).
    private func classifyFirstByte() -> Bool {
        var byte: UInt8 = 0
        let result: IOResult<Int>
        do {
            result = try SystemCall.run("recv") { recv(socket.descriptor, &byte, 1, Int32(MSG_PEEK)) }
        } catch {
            fail()
            return false
        }
        switch result {
        case .wouldBlock:
            return false
        case .processed(0):
            fail()
            return false
        case .processed:
            break
        }
        sawFirstByte = true
        if byte == Self.tlsHandshakeRecord { return true }
        if (65...90).contains(byte) {
            // "GET ", "POST ", ...: plain HTTP on the TLS port. Answer it over plain TCP, then close.
            finished = true
            releaseSSL()
            Connection.adopt(
                transport: socket, context: context, remoteAddress: remoteAddress, rejectStatus: 400,
                rejectMessage: "this port speaks HTTPS (TLS): use https:// to connect")
            sessions.failedHandshakes.add(1, ordering: .relaxed)
            return false
        }
        fail()
        return false
    }

    private func advance() {
        guard let ssl else { return }
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            finished = true
            self.ssl = nil
            let transport = TLSTransport(socket: socket, ssl: ssl, liveSessions: sessions)
            Connection.adopt(transport: transport, context: context, remoteAddress: remoteAddress, rejectStatus: rejectStatus)
            return
        }
        let wanted: EpollEvents
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ:
            wanted = [.input, .readHangup]
        case SSL_ERROR_WANT_WRITE:
            wanted = [.output, .readHangup]
        default:
            ERR_clear_error()
            fail()
            return
        }
        guard wanted != interest else { return }
        do {
            try context.loop.modify(descriptor: socket.descriptor, events: wanted)
            interest = wanted
        } catch {
            fail()
        }
    }

    private func releaseSSL() {
        if let ssl {
            SSL_free(ssl)
            self.ssl = nil
            sessions.released()
        }
    }

    /// Gives up: frees the `SSL`, closes the socket, frees its connection slot.
    private func fail(counted: Bool = true) {
        guard !finished else { return }
        finished = true
        if counted { sessions.failedHandshakes.add(1, ordering: .relaxed) }
        context.loop.deregister(descriptor: socket.descriptor)
        releaseSSL()
        socket.close()
        server.openConnections.subtract(1, ordering: .relaxed)
    }
}
