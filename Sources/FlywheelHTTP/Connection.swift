import FlywheelSockets
#if canImport(Glibc)
import Glibc
#endif

/// One accepted client connection speaking HTTP/1.1 over a `Transport` (a plain socket, or TLS once
/// `TLSHandshake` is done). Owned by its
/// event loop: every method runs on that loop's thread (writers from other threads hop there first).
///
/// Requests are handled one at a time, in order: the next pipelined request is parsed only after the current
/// response ends. Reading continues while a response is in progress (to notice a client leaving) until
/// `pauseReadingThreshold` bytes are buffered.
final class Connection: EventLoopHandler {
    private enum Phase {
        /// Waiting for (the rest of) a request.
        case reading
        /// A request is with the responder, or an error response is being sent.
        case responding
        /// Final response sent and our side shut down; discarding input until the client closes.
        case lingering
        case closed
    }

    private static let pauseReadingThreshold = 256 * 1024
    private static let lingerNanos: UInt64 = 2_000_000_000
    private static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
    private static let crlf: [UInt8] = [13, 10]
    private static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
    /// What our own 503s (connection limit, body budget) tell clients: both clear up within seconds.
    private static let retryAfterSeconds = "1"

    private let transport: any Transport
    private let context: HTTPLoopContext
    private let remoteAddress: String
    private var parser: HTTPParser
    private var phase = Phase.reading
    private var output = OutputBuffer()
    /// Bytes written by the responder and not yet taken by the client.
    var pendingOutputBytes: Int { output.count }
    private var interest: EpollEvents = []
    private var readPaused = false
    private var isProcessingInput = false
    private var closeWhenFlushed = false
    /// Bytes of the server-wide body budget this connection holds for the request it is receiving.
    private var reservedBodyBytes = 0

    // The exchange in progress.
    private var writer: HTTPResponseWriter?
    private var closeCallbacks: [@Sendable (HTTPCloseReason) -> Void] = []
    /// Set once the shutdown's grace period ran out and this connection's responder was told.
    private var shutdownNotified = false
    private var keepAlive = true
    private var isHeadRequest = false
    private var isHTTP10 = false
    private var responseStarted = false
    private var isStreaming = false
    private var isChunked = false
    // For the access log (only kept when the server has an observer).
    private var accessMethod = "-"
    private var accessPath = "-"
    private var accessStartedNanos: UInt64 = 0
    private var responseStatus = 0
    private var responseBodyBytes = 0
    private var responseRequestID: String?

    // Timers (CLOCK_MONOTONIC ns; 0 = not running).
    private var requestStartedNanos: UInt64 = 0
    private var lastReadNanos: UInt64 = 0
    private var lastActivityNanos: UInt64
    private var lastWriteProgressNanos: UInt64 = 0
    private var lingerDeadlineNanos: UInt64 = 0

    private var server: HTTPServerState { context.server }
    private var loop: EventLoop { context.loop }

    private init(transport: any Transport, context: HTTPLoopContext, remoteAddress: String) {
        self.transport = transport
        self.context = context
        self.remoteAddress = remoteAddress
        let limits = context.server.limits
        parser = HTTPParser(maxHeaderBytes: limits.maxHeaderBytes, maxBodyBytes: limits.maxBodyBytes,
                            bodyLimit: context.server.configuration.bodyLimit)
        lastActivityNanos = MonotonicClock.now()
    }

    /// Takes ownership of an accepted socket (already counted in `openConnections`) on the current loop.
    /// With `rejectStatus` the connection only answers that error and closes (used for 503 over the limit).
    static func open(socket: Socket, context: HTTPLoopContext, remoteAddress: String, rejectStatus: Int? = nil) {
        let connection = Connection(transport: socket, context: context, remoteAddress: remoteAddress)
        do {
            try socket.setNoDelay()
            try context.loop.register(connection, descriptor: socket.descriptor, events: [.input, .readHangup])
        } catch {
            connection.abandonUnregistered()
            return
        }
        connection.begin(rejectStatus: rejectStatus, rejectMessage: nil)
    }

    /// Takes over a transport whose descriptor the current loop already watches for another handler (a finished
    /// TLS handshake), keeping its registration. Otherwise as `open`; `rejectMessage` replaces the default words.
    static func adopt(transport: any Transport, context: HTTPLoopContext, remoteAddress: String,
                      rejectStatus: Int? = nil, rejectMessage: String? = nil) {
        let connection = Connection(transport: transport, context: context, remoteAddress: remoteAddress)
        do {
            try context.loop.replaceHandler(descriptor: transport.descriptor, with: connection, events: [.input, .readHangup])
        } catch {
            context.loop.deregister(descriptor: transport.descriptor)
            connection.abandonUnregistered()
            return
        }
        connection.begin(rejectStatus: rejectStatus, rejectMessage: rejectMessage)
        // A TLS client may have sent its first request with its last handshake bytes; OpenSSL may hold it already.
        if connection.phase == .reading && transport.hasBufferedInput { connection.readInput() }
    }

    private func abandonUnregistered() {
        transport.close()
        context.server.openConnections.subtract(1, ordering: .relaxed)
        phase = .closed
    }

    private func begin(rejectStatus: Int?, rejectMessage: String?) {
        interest = [.input, .readHangup]
        if let status = rejectStatus {
            sendProtocolError(status: status, message: rejectMessage ?? "the server is at its connection limit")
        }
    }

    // MARK: EventLoopHandler

    func handleEvents(_ events: EpollEvents) {
        if events.contains(.error) || events.contains(.hangup) {
            close()
            return
        }
        if events.contains(.output) {
            flushOutput()
            if phase == .closed { return }
        }
        if events.contains(.input) {
            readInput()
        } else if events.contains(.readHangup) {
            // Reading is paused and the client shut its side: it is gone.
            close()
        }
    }

    func tick(nowNanos now: UInt64) {
        if server.isForceClosing.load(ordering: .relaxed) {
            close()
            return
        }
        if !shutdownNotified && server.isEndingResponses.load(ordering: .relaxed) {
            endForShutdown()
            return
        }
        switch phase {
        case .reading:
            if requestStartedNanos != 0 {
                if server.requestTimeoutNanos > 0 && now &- requestStartedNanos > server.requestTimeoutNanos {
                    sendProtocolError(status: 408, message: "request not received within \(Double(server.requestTimeoutNanos) / 1e9) s")
                    return
                }
            } else if output.isEmpty {
                // Idle (no request in progress, nothing left to send). Pending output is the write timeout's job.
                if server.isDraining.load(ordering: .relaxed)
                    || (server.idleTimeoutNanos > 0 && now &- lastActivityNanos > server.idleTimeoutNanos) {
                    close()
                    return
                }
            }
        case .responding:
            break
        case .lingering:
            if now >= lingerDeadlineNanos { close() }
            return
        case .closed:
            return
        }
        if !output.isEmpty && server.writeTimeoutNanos > 0 && now &- lastWriteProgressNanos > server.writeTimeoutNanos {
            close()
        }
    }

    func loopWillStop() {
        close()
    }

    // MARK: Reading

    private func readInput() {
        let buffer = loop.readBuffer
        while true {
            let result: IOResult<Int>
            do {
                result = try transport.read(into: buffer)
            } catch {
                close()
                return
            }
            guard case .processed(let count) = result else { break }
            if count == 0 {
                // End of stream. A client that half-closes is treated as gone (as most servers do).
                close()
                return
            }
            if phase == .lingering {
                if count < buffer.count { return }
                continue
            }
            let now = MonotonicClock.now()
            if requestStartedNanos == 0 && phase == .reading && !parser.hasPartialRequest {
                requestStartedNanos = now
            }
            lastReadNanos = now
            parser.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
            if phase == .reading {
                // Parse after every read: a body is checked against the budget before most of it is here, and
                // its bytes go straight into the body instead of piling up in the parser's buffer first.
                processInput()
                if phase == .closed { return }
            }
            if count < buffer.count { break }
            if phase == .responding && parser.bufferedByteCount > Self.pauseReadingThreshold { break }
        }
        switch phase {
        case .responding where parser.bufferedByteCount > Self.pauseReadingThreshold:
            readPaused = true
            updateInterest()
        default:
            break
        }
    }

    /// Parses and dispatches buffered requests while no response is in progress.
    private func processInput() {
        guard !isProcessingInput else { return }
        isProcessingInput = true
        defer { isProcessingInput = false }
        while phase == .reading {
            let event: HTTPParser.Event
            do {
                event = try parser.next()
            } catch {
                sendProtocolError(status: error.status, message: error.message)
                return
            }
            switch event {
            case .needMore:
                guard reserveAnnouncedBody() else { return }
                if !parser.hasPartialRequest { requestStartedNanos = 0 }
                return
            case .continueExpected:
                guard reserveAnnouncedBody() else { return }
                emit(Self.continueResponse)
            case .request(let request):
                releaseBodyReservation()
                dispatch(request)
            }
        }
    }

    /// Makes this connection's share of the server-wide body budget cover what the parser expects to receive;
    /// if the budget cannot, answers 503 (the client may retry soon) and returns false.
    private func reserveAnnouncedBody() -> Bool {
        let announced = parser.announcedBodyBytes
        guard announced > reservedBodyBytes else { return true }
        guard server.reserveBodyBytes(announced - reservedBodyBytes) else {
            sendProtocolError(status: 503, message: "the server is receiving too many request bodies; retry shortly")
            return false
        }
        reservedBodyBytes = announced
        return true
    }

    private func releaseBodyReservation() {
        guard reservedBodyBytes > 0 else { return }
        server.releaseBodyBytes(reservedBodyBytes)
        reservedBodyBytes = 0
    }

    private func dispatch(_ request: HTTPRequest) {
        var request = request
        request.remoteAddress = remoteAddress
        request.receivedAtNanos = requestStartedNanos != 0 ? requestStartedNanos : MonotonicClock.now()
        requestStartedNanos = 0
        phase = .responding
        keepAlive = request.wantsKeepAlive && !server.isDraining.load(ordering: .relaxed)
        isHeadRequest = request.method == "HEAD"
        isHTTP10 = request.version == .http1_0
        responseStarted = false
        isStreaming = false
        if server.configuration.accessObserver != nil {
            accessMethod = request.method
            accessPath = request.path
            accessStartedNanos = request.receivedAtNanos
            responseStatus = 0
            responseBodyBytes = 0
            responseRequestID = nil
        }
        let writer = HTTPResponseWriter(connection: LoopBound(self, loop: loop), server: server)
        self.writer = writer
        server.inFlight.add(1, ordering: .relaxed)
        server.responder.respond(to: request, writer: writer)
    }

    // MARK: Responding (called by HTTPResponseWriter on this loop)

    func send(_ response: HTTPResponse, from sender: HTTPResponseWriter) {
        guard phase == .responding, writer === sender, !responseStarted else { return }
        responseStarted = true
        noteResponseConnectionHeader(response.headers)
        let bodyAllowed = HTTPResponseHead.allowsBody(response.status)
        noteResponse(status: response.status, headers: response.headers, bodyBytes: bodyAllowed && !isHeadRequest ? response.body.count : 0)
        var head = takeHeadBuffer()
        HTTPResponseHead.write(
            status: response.status, headers: response.headers,
            framing: bodyAllowed ? .contentLength(response.body.count) : .none,
            connection: connectionHeader(), dateLine: context.dateCache.headerLine(), into: &head)
        emit(head, bodyAllowed && !isHeadRequest ? response.body : [])
        giveBackHeadBuffer(head)
        finishResponse()
    }

    func startStream(status: Int, headers: HTTPHeaders, from sender: HTTPResponseWriter) {
        guard phase == .responding, writer === sender, !responseStarted else { return }
        responseStarted = true
        isStreaming = true
        noteResponseConnectionHeader(headers)
        noteResponse(status: status, headers: headers, bodyBytes: 0)
        let bodyAllowed = HTTPResponseHead.allowsBody(status)
        isChunked = bodyAllowed && !isHTTP10
        if !isChunked && bodyAllowed { keepAlive = false } // close-delimited body
        var head = takeHeadBuffer()
        HTTPResponseHead.write(
            status: status, headers: headers, framing: isChunked ? .chunked : .none,
            connection: connectionHeader(), dateLine: context.dateCache.headerLine(), into: &head)
        emit(head)
        giveBackHeadBuffer(head)
    }

    func writeChunk(_ bytes: [UInt8], from sender: HTTPResponseWriter) {
        guard phase == .responding, writer === sender, isStreaming, !bytes.isEmpty, !isHeadRequest else { return }
        responseBodyBytes += bytes.count
        if isChunked {
            var prefix = context.chunkPrefixBuffer
            context.chunkPrefixBuffer = []
            prefix.removeAll(keepingCapacity: true)
            prefix.appendHex(bytes.count)
            prefix.append(contentsOf: Self.crlf)
            emit(prefix, bytes, Self.crlf)
            context.chunkPrefixBuffer = prefix
        } else {
            emit(bytes)
        }
    }

    func endStream(from sender: HTTPResponseWriter) {
        guard phase == .responding, writer === sender, isStreaming else { return }
        if isChunked && !isHeadRequest { emit(Self.lastChunk) }
        finishResponse()
    }

    func abort(from sender: HTTPResponseWriter) {
        guard phase == .responding, writer === sender else { return }
        closeCallbacks.removeAll()
        close()
    }

    func addCloseCallback(_ callback: @escaping @Sendable (HTTPCloseReason) -> Void, from sender: HTTPResponseWriter) {
        if writer === sender {
            if shutdownNotified {
                callback(.serverShutdown)
            } else {
                closeCallbacks.append(callback)
            }
        } else if let reason = sender.closeReason {
            callback(reason)
        }
    }

    // MARK: Access log

    private func noteResponse(status: Int, headers: HTTPHeaders, bodyBytes: Int) {
        guard server.configuration.accessObserver != nil else { return }
        responseStatus = status
        responseBodyBytes = bodyBytes
        responseRequestID = headers["x-request-id"]
    }

    /// Hands the request's access record to the server's observer, once per request.
    private func reportAccess(_ ending: HTTPAccessRecord.Ending, writer: HTTPResponseWriter?) {
        guard let observer = server.configuration.accessObserver else { return }
        let record = HTTPAccessRecord(
            remoteAddress: remoteAddress, method: accessMethod, path: accessPath, status: responseStatus,
            bodyBytes: responseBodyBytes, durationNanos: MonotonicClock.now() &- accessStartedNanos,
            requestID: responseRequestID, notes: writer?.notesForAccessLog ?? [], ending: ending)
        accessMethod = "-"
        accessPath = "-"
        observer(record)
    }

    // MARK: Shutdown

    /// The shutdown's grace period ran out. A response in progress gets its `onClose` callbacks with
    /// `.serverShutdown` while the connection still works, so the responder can write final bytes and end it;
    /// then the connection closes once its output is flushed (the server bounds that wait).
    private func endForShutdown() {
        shutdownNotified = true
        switch phase {
        case .reading:
            // Idle, or a request still arriving: nothing to finish.
            if output.isEmpty { close() } else { closeAfterFlush() }
        case .responding:
            keepAlive = false
            if writer != nil {
                let callbacks = closeCallbacks
                closeCallbacks = []
                for callback in callbacks { callback(.serverShutdown) }
            }
            if phase == .responding, let unfinished = writer {
                writer = nil
                isStreaming = false
                reportAccess(.serverShutdown, writer: unfinished)
                server.inFlight.subtract(1, ordering: .relaxed)
                unfinished.markClosed(.serverShutdown)
                closeAfterFlush()
            }
        case .lingering, .closed:
            break
        }
    }

    private func noteResponseConnectionHeader(_ headers: HTTPHeaders) {
        if headers.containsToken("close", in: "Connection") || server.isDraining.load(ordering: .relaxed) {
            keepAlive = false
        }
    }

    private func connectionHeader() -> HTTPResponseHead.ConnectionHeader {
        if !keepAlive { return .close }
        return isHTTP10 ? .keepAlive : .omitted
    }

    private func takeHeadBuffer() -> [UInt8] {
        var head = context.headBuffer
        context.headBuffer = []
        head.removeAll(keepingCapacity: true)
        return head
    }

    private func giveBackHeadBuffer(_ head: [UInt8]) {
        context.headBuffer = head
    }

    /// The response ended normally: release the writer, then continue with the next request or close.
    private func finishResponse() {
        guard phase == .responding, let finished = writer else { return }
        writer = nil
        isStreaming = false
        closeCallbacks.removeAll()
        reportAccess(.completed, writer: finished)
        finished.markFinished()
        server.inFlight.subtract(1, ordering: .relaxed)
        if keepAlive && !server.isDraining.load(ordering: .relaxed) {
            phase = .reading
            let now = MonotonicClock.now()
            lastActivityNanos = now
            // A pipelined request's time starts now: it could not be read while the previous one was answered.
            requestStartedNanos = parser.hasPartialRequest ? now : 0
            let resumed = readPaused
            if readPaused {
                readPaused = false
                updateInterest()
            }
            processInput()
            // Reading stopped while the transport may still hold input (TLS) that no readiness event will report.
            if resumed && phase != .closed && transport.hasBufferedInput { readInput() }
        } else {
            closeAfterFlush()
        }
    }

    /// Answers a protocol error through the configured renderer and closes afterwards.
    private func sendProtocolError(status: Int, message: String) {
        guard phase == .reading || phase == .responding else { return }
        phase = .responding
        keepAlive = false
        releaseBodyReservation()
        var response = server.configuration.errorRenderer(status, message)
        if status == 503 && !response.headers.contains("Retry-After") {
            response.headers.add("Retry-After", Self.retryAfterSeconds)
        }
        if server.configuration.accessObserver != nil {
            if writer == nil {
                // A request that never reached the responder (unparseable, too large, too slow, over a limit).
                accessMethod = "-"
                accessPath = "-"
                accessStartedNanos = requestStartedNanos != 0 ? requestStartedNanos : MonotonicClock.now()
                responseRequestID = nil
            }
            responseStatus = status
            responseBodyBytes = response.body.count
            if writer == nil { reportAccess(.completed, writer: nil) }
        }
        var head = takeHeadBuffer()
        HTTPResponseHead.write(
            status: status, headers: response.headers, framing: .contentLength(response.body.count),
            connection: .close, dateLine: context.dateCache.headerLine(), into: &head)
        emit(head, response.body)
        giveBackHeadBuffer(head)
        closeAfterFlush()
    }

    // MARK: Writing

    /// Writes `first + second + third` now with one `sendmsg` if nothing is queued, queueing what the kernel
    /// does not take; otherwise appends to the queue. Enforces `maxPendingOutputBytes`.
    private func emit(_ first: [UInt8], _ second: [UInt8] = [], _ third: [UInt8] = []) {
        guard phase == .reading || phase == .responding else { return }
        let total = first.count + second.count + third.count
        guard total > 0 else { return }
        var written = 0
        let wasBacklogged = !output.isEmpty
        if !wasBacklogged {
            let result: IOResult<Int>
            do {
                result = try first.withUnsafeBytes { a in
                    try second.withUnsafeBytes { b in
                        try third.withUnsafeBytes { c in
                            try withUnsafeTemporaryAllocation(of: iovec.self, capacity: 3) { vectors in
                                var count = 0
                                func add(_ part: UnsafeRawBufferPointer) {
                                    guard !part.isEmpty else { return }
                                    vectors[count] = iovec(iov_base: UnsafeMutableRawPointer(mutating: part.baseAddress),
                                                           iov_len: part.count)
                                    count += 1
                                }
                                add(a)
                                add(b)
                                add(c)
                                return try transport.write(UnsafeMutableBufferPointer(rebasing: vectors[0..<count]))
                            }
                        }
                    }
                }
            } catch {
                close()
                return
            }
            if case .processed(let count) = result { written = count }
            if written == total { return }
            lastWriteProgressNanos = MonotonicClock.now()
        }
        var skip = written
        for part in [first, second, third] {
            if skip >= part.count {
                skip -= part.count
                continue
            }
            if skip == 0 {
                output.append(part)
            } else {
                part.withUnsafeBytes { output.append(UnsafeRawBufferPointer(rebasing: $0[skip...])) }
                skip = 0
            }
        }
        // The cap is for clients that do not keep up: one large response into an empty queue is fine.
        if wasBacklogged && output.count > server.configuration.maxPendingOutputBytes {
            close()
            return
        }
        updateInterest()
    }

    private func flushOutput() {
        while !output.isEmpty {
            let result: IOResult<Int>
            do {
                result = try output.withUnsentBytes { bytes in try transport.write(bytes) }
            } catch {
                close()
                return
            }
            guard case .processed(let count) = result else { break }
            output.consume(count)
            lastWriteProgressNanos = MonotonicClock.now()
        }
        if output.isEmpty && closeWhenFlushed {
            beginLingeringClose()
            return
        }
        updateInterest()
    }

    private func closeAfterFlush() {
        closeWhenFlushed = true
        if output.isEmpty { beginLingeringClose() }
    }

    /// Sends FIN and keeps reading (discarding) for a while, so that unread request bytes do not make the
    /// kernel reset the connection before the client has read our final response.
    private func beginLingeringClose() {
        guard phase == .reading || phase == .responding else { return }
        if let finished = writer {
            // An error response replaced an exchange the responder still owned; the client will not see it.
            writer = nil
            reportAccess(.completed, writer: finished)
            server.inFlight.subtract(1, ordering: .relaxed)
            finished.markFinished()
        }
        releaseBodyReservation()
        parser.discardAll()
        transport.shutdownWrite()
        phase = .lingering
        server.lingeringConnections.add(1, ordering: .relaxed)
        lingerDeadlineNanos = MonotonicClock.now() &+ Self.lingerNanos
        readPaused = false
        updateInterest()
    }

    private func updateInterest() {
        guard phase != .closed else { return }
        var wanted: EpollEvents = [.readHangup]
        if !readPaused || phase == .lingering { wanted.insert(.input) }
        if !output.isEmpty && phase != .lingering { wanted.insert(.output) }
        guard wanted != interest else { return }
        do {
            try loop.modify(descriptor: transport.descriptor, events: wanted)
            interest = wanted
        } catch {
            close()
        }
    }

    /// Closes now. If a response was still in progress its writer is marked closed and the `onClose` callbacks
    /// run: with `.clientDisconnected`, or `.serverShutdown` when the server is forcing connections closed.
    private func close() {
        guard phase != .closed else { return }
        if phase == .lingering { server.lingeringConnections.subtract(1, ordering: .relaxed) }
        phase = .closed
        releaseBodyReservation()
        loop.deregister(descriptor: transport.descriptor)
        transport.close()
        output.removeAll()
        server.openConnections.subtract(1, ordering: .relaxed)
        if let abandoned = writer {
            writer = nil
            server.inFlight.subtract(1, ordering: .relaxed)
            let reason: HTTPCloseReason = shutdownNotified || server.isForceClosing.load(ordering: .relaxed)
                ? .serverShutdown : .clientDisconnected
            reportAccess(reason == .serverShutdown ? .serverShutdown : .clientGone, writer: abandoned)
            abandoned.markClosed(reason)
            let callbacks = closeCallbacks
            closeCallbacks = []
            for callback in callbacks { callback(reason) }
        }
    }
}
