import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import FlywheelUpstream
import Synchronization

/// One client request relayed to an upstream. Upstream events and a client disconnect both arrive on the
/// connection's event loop (curl runs there), but the state sits behind one lock so that the exchange does not
/// depend on it. A stream is forwarded chunk by chunk as it arrives and assembled on the side for the log.
/// Ends exactly once, in `upstreamDidComplete`, with one `RequestOutcome` for the ledger.
final class ProxyExchange: UpstreamResponseHandler {
    private let ledger: RequestLedger
    private let writer: any ResponseSink
    private let context: RequestContext
    /// Most bytes of a response kept: a buffered body beyond it is refused (502); a stream beyond it keeps
    /// flowing to the client while the log's copy stops there, marked truncated.
    private let maxResponseBytes: Int
    /// Where the request goes when this upstream fails before anything reached the client (a policy's fallback).
    private let fallback: Fallback?

    private struct State {
        /// Dropped at completion: the transfer's job refers back to this exchange.
        var transfer: UpstreamTransfer?
        var head: UpstreamResponseHead?
        var streaming = false
        var body: [UInt8] = []
        var bodyTooLarge = false
        var parser = ServerSentEventParser()
        var assembler = StreamAssembler()
        var parseFailed = false
        var loggedStreamBytes = 0
        var logTruncated = false
        var interruption: RequestOutcome.Interruption?
        /// Handed over to a fallback: nothing more is answered or logged here.
        var abandoned = false
        var budgetTimer: HTTPEventLoopTimer?
        /// With a fallback, a stream's head and its first bytes wait for the first output (a role chunk is not
        /// output), so a stream that stalls or fails before its first token can still change hands.
        var pendingHead: HTTPHeaders?
        var held: [UInt8] = []
    }
    private let state = Mutex(State())

    init(ledger: RequestLedger, writer: any ResponseSink, context: RequestContext, maxResponseBytes: Int,
         fallback: Fallback? = nil) {
        self.ledger = ledger
        self.writer = writer
        self.context = context
        self.maxResponseBytes = maxResponseBytes
        self.fallback = fallback
        // One event larger than the log may keep cannot be assembled anyway (nor more than 4 MiB of one).
        let eventLimit = max(1024, min(4 << 20, maxResponseBytes))
        state.withLock { $0.parser = ServerSentEventParser(maxEventBytes: eventLimit) }
        #if DEBUG
        ExchangeCensus.proxies.add(1, ordering: .relaxed)
        #endif
    }

    #if DEBUG
    deinit { ExchangeCensus.proxies.subtract(1, ordering: .relaxed) }
    #endif

    /// Sends `request` through `client` (the one running on the writer's event loop).
    func start(_ request: UpstreamRequest, client: UpstreamClient?) {
        guard let client else {
            return upstreamDidComplete(UpstreamCompletion(error: .shutdown, timing: UpstreamTiming(startedNanos: 0, firstByteNanos: nil, finishedNanos: 0)))
        }
        let transfer = client.start(request, handler: self)
        let done = state.withLock { s -> Bool in
            if transfer.isCompleted { return true }
            s.transfer = transfer
            return false
        }
        if done { return }
        // No first output within the budget: the next target answers instead (when there is one).
        if let timer = fallback?.startBudget(on: writer.eventLoop, { [weak self] in self?.firstTokenBudgetExpired() }) {
            state.withLock { $0.budgetTimer = timer }
        }
        // A client that goes away cancels the upstream transfer: no tokens are paid for that nobody reads.
        // At the end of the shutdown grace the server asks the same, and the client is told why.
        writer.onClose { [weak self] reason in self?.interrupted(reason) }
    }

    /// On the loop, from the writer: the client left, or the shutdown grace ran out (then what is written here
    /// is the last the client gets).
    private func interrupted(_ reason: HTTPCloseReason) {
        let (transfer, streaming, abandoned) = state.withLock { s -> (UpstreamTransfer?, Bool, Bool) in
            if s.interruption == nil { s.interruption = reason == .serverShutdown ? .serverShutdown : .clientClosed }
            return (s.transfer, s.streaming && s.pendingHead == nil, s.abandoned)
        }
        if abandoned { return }
        if reason == .serverShutdown {
            writer.end(with: Self.shutdownError, streaming: streaming, context: context)
        }
        transfer?.cancel()
    }

    static let shutdownError = OpenAIError.serverShutdown("The gateway shut down before the response was complete; retry.")
    /// Most bytes of a stream held back while waiting for its first output.
    static let maxHeldBytes = 1 << 20

    /// On the loop: the budget ran out before the upstream's head. Hands over to the next target when there is
    /// one (cancelling this transfer); otherwise keeps waiting.
    private func firstTokenBudgetExpired() {
        guard let fallback, fallback.isAvailable() else { return }
        let transfer = state.withLock { s -> UpstreamTransfer? in
            guard s.head == nil || s.pendingHead != nil, !s.abandoned, s.interruption == nil, s.transfer != nil else { return nil }
            s.abandoned = true
            return s.transfer
        }
        guard let transfer else { return }
        transfer.cancel()
        fallback.takeOver("first_token_budget")
    }

    // MARK: UpstreamResponseHandler (the driver's loop thread)

    func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
        let isEventStream = head.value(for: "content-type")?.hasPrefixIgnoringASCIICase("text/event-stream") ?? false
        let startStream = context.stream && head.status == 200 && isEventStream
        let holdHead = startStream && fallback != nil
        var headers = responseHeaders(from: head)
        if startStream {
            headers.set("Content-Type", "text/event-stream")
            headers.set("Cache-Control", "no-cache")
        }
        let (timer, abandoned) = state.withLock { s -> (HTTPEventLoopTimer?, Bool) in
            s.head = head
            s.streaming = startStream && !s.abandoned
            if holdHead { s.pendingHead = headers; return (nil, s.abandoned) }
            defer { s.budgetTimer = nil }
            return (s.budgetTimer, s.abandoned)
        }
        if let timer { writer.eventLoop.cancel(timer) }
        if abandoned { return }
        if startStream && !holdHead {
            writer.startStream(status: 200, headers: headers)
        }
        for _ in 0..<max(0, head.attempts - 1) {
            ledger.metrics.upstreamError(upstream: head.endpoint, kind: "retried")
        }
        if head.status >= 500 || head.status == 429 {
            ledger.metrics.upstreamError(upstream: head.endpoint, kind: "status_\(head.status)")
        }
    }

    func upstreamDidReceiveBody(_ chunk: [UInt8]) {
        var release: (head: HTTPHeaders, bytes: [UInt8], timer: HTTPEventLoopTimer?)?
        let (forward, cancel) = state.withLock { s -> (Bool, UpstreamTransfer?) in
            if s.abandoned { return (false, nil) }
            if s.streaming {
                if !s.parseFailed && !s.logTruncated {
                    do {
                        for event in try s.parser.feed(chunk) {
                            s.loggedStreamBytes += event.data.utf8.count
                            if s.loggedStreamBytes > maxResponseBytes {
                                s.logTruncated = true  // the client still gets every byte
                                break
                            }
                            s.assembler.add(data: event.data)
                        }
                    } catch {
                        s.parseFailed = true  // still forwarded; only the log's copy is lost
                    }
                }
                if let head = s.pendingHead {
                    // Held until the first output (or bytes that cannot be judged, or too many to hold).
                    s.held.append(contentsOf: chunk)
                    if s.assembler.producedOutput || s.parseFailed || s.logTruncated || s.held.count > Self.maxHeldBytes {
                        release = (head, s.held, s.budgetTimer)
                        s.pendingHead = nil
                        s.held = []
                        s.budgetTimer = nil
                    }
                    return (false, nil)
                }
                return (true, nil)
            }
            guard !s.bodyTooLarge else { return (false, nil) }
            if s.body.count + chunk.count > maxResponseBytes {
                s.bodyTooLarge = true
                s.body = []
                return (false, s.transfer)
            }
            s.body.append(contentsOf: chunk)
            return (false, nil)
        }
        if let release {
            if let timer = release.timer { writer.eventLoop.cancel(timer) }
            writer.startStream(status: 200, headers: release.head)
            writer.write(release.bytes)
        }
        if forward { writer.write(chunk) }
        cancel?.cancel()
    }

    func upstreamDidComplete(_ completion: UpstreamCompletion) {
        let timing = completion.timing
        let s = state.withLock { s -> State in
            let copy = s
            s.transfer = nil
            s.body = []
            s.assembler = StreamAssembler()
            s.budgetTimer = nil
            return copy
        }
        if let timer = s.budgetTimer { writer.eventLoop.cancel(timer) }
        // Handed over to a fallback target, which answers and logs the request.
        if s.abandoned { return }
        if !s.streaming, s.interruption == nil, let fallback, let reason = Self.fallbackReason(s, completion.error),
           fallback.handOver(reason) {
            state.withLock { $0.abandoned = true }
            if let failure = completion.error, let endpoint = failure.endpointName {
                ledger.metrics.upstreamError(upstream: endpoint, kind: failure.kind)
            }
            return
        }
        var outcome = RequestOutcome(status: 200)
        outcome.upstream = s.head?.endpoint
        outcome.attempts = s.head?.attempts ?? completion.attempts
        outcome.firstByteNanos = timing.firstByteNanos
        if timing.startedNanos != 0 { outcome.serviceSeconds = Double(timing.finishedNanos &- timing.startedNanos) / 1e9 }
        let failure = completion.error
        if let failure, let endpoint = failure.endpointName, s.interruption == nil, !failure.isCancellation {
            ledger.metrics.upstreamError(upstream: endpoint, kind: failure.kind)
        }

        let cutOff = s.streaming && Self.endedWithoutItsEnd(s, failure)
        if s.streaming, let held = s.pendingHead {
            // A held stream ended before its first output: another target may answer instead; otherwise the
            // client gets what there was.
            if s.interruption == nil, let fallback, completion.error.map({ !$0.isCancellation }) ?? (s.assembler.streamError != nil || cutOff),
               fallback.handOver(completion.error.map { "upstream_\($0.kind)" } ?? "upstream_stream_error") {
                state.withLock { $0.abandoned = true }
                return
            }
            writer.startStream(status: 200, headers: held)
            writer.write(s.held)
        }
        if s.streaming {
            // The head went out long ago: whatever happens now is reported inside the stream.
            var tail: OpenAIError?
            if let failure {
                if s.interruption == .serverShutdown {
                    outcome.error = Self.shutdownError  // the client got it in the stream already
                    outcome.interruption = .serverShutdown
                } else if s.interruption == .clientClosed || failure.isCancellation {
                    outcome.status = 499
                    outcome.error = .clientClosed()
                    outcome.interruption = .clientClosed
                } else {
                    let (error, detail) = Self.clientError(for: failure)
                    outcome.error = error
                    outcome.errorDetail = detail
                    outcome.cutShort = true
                    if case .shutdown = failure { outcome.interruption = .serverShutdown }
                    tail = error
                }
            }
            if cutOff {
                // A clean end of the transfer, but not of the stream: no [DONE] and no finish_reason. The
                // client is told, as for a reset, so that it does not take a cut answer for a whole one.
                let error = OpenAIError.upstreamUnavailable("The upstream's stream ended before it was complete.")
                outcome.error = error
                outcome.errorDetail = "The upstream '\(s.head?.endpoint ?? "?")' ended its event stream without [DONE] or a finish_reason."
                outcome.cutShort = true
                tail = error
                if let endpoint = s.head?.endpoint { ledger.metrics.upstreamError(upstream: endpoint, kind: "stream_cut") }
            }
            let assembled = s.assembler.assembled()
            outcome.responseText = assembled?.serializedString()
            outcome.responseTruncated = s.logTruncated || s.parseFailed
            if s.parseFailed || s.assembler.unparsedCount > 0, s.assembler.streamError == nil {
                // Passed to the client as they came; the log says why its copy lacks them.
                let what = s.parseFailed ? "an event longer than \(s.parser.maxEventBytes) bytes; the log's copy stops before it"
                                         : "\(s.assembler.unparsedCount) event(s) whose data is not JSON"
                outcome.upstreamError = ["error": ["message": .string("the upstream's stream had \(what)"),
                                                   "code": .string("upstream_stream_unparsed")]]
            }
            outcome.modelServed = assembled?["model"]?.stringValue ?? s.assembler.servedModel
            outcome.usage = .init(json: s.assembler.usage)
            if let streamError = s.assembler.streamError { outcome.upstreamError = ["error": streamError] }
            ledger.finish(context, outcome)
            if let tail {
                writer.end(with: tail, streaming: true, context: context)
            } else {
                writer.endStream()
            }
            return
        }

        let response: HTTPResponse?
        if s.bodyTooLarge {
            let error = OpenAIError.upstreamUnavailable("The upstream response exceeded the gateway's limit of \(maxResponseBytes) bytes.")
            outcome.status = error.status
            outcome.error = error
            response = context.errorResponse(error)
        } else if let failure {
            if s.interruption == .serverShutdown {
                outcome.status = Self.shutdownError.status
                outcome.error = Self.shutdownError
                outcome.interruption = .serverShutdown
                response = nil  // sent when the grace ran out
            } else if s.interruption == .clientClosed || failure.isCancellation {
                outcome.status = 499  // client closed the request, as nginx logs it
                outcome.error = .clientClosed()
                outcome.interruption = .clientClosed
                response = nil
            } else {
                let (error, detail) = Self.clientError(for: failure)
                outcome.status = error.status
                outcome.error = error
                outcome.errorDetail = detail
                var answer = context.errorResponse(error)
                if error.status == 503 { answer.headers.add("Retry-After", "1") }
                response = answer
            }
        } else if let head = s.head {
            outcome.status = head.status
            var headers = responseHeaders(from: head)
            let contentType = head.value(for: "content-type") ?? "application/json"
            headers.set("Content-Type", contentType)
            // The log keeps the upstream's bytes as sent; the parsed copy only feeds usage, model and errors.
            if !s.body.isEmpty { outcome.responseText = String(decoding: s.body, as: UTF8.self) }
            var parsed: JSON?
            if contentType.containsIgnoringASCIICase("json") { parsed = try? JSONParser.parse(s.body, limits: .depthOnly) }
            if let parsed {
                outcome.modelServed = parsed["model"]?.stringValue
                outcome.usage = .init(json: parsed["usage"])
                if head.status >= 400 { outcome.upstreamError = parsed }
            }
            if head.status >= 400, parsed?["error"] == nil {
                // An error page that is not OpenAI's shape (a proxy's HTML, a bare text) may name hosts and
                // addresses and means nothing to the SDKs: the client gets the status in OpenAI's shape, the
                // log keeps the page.
                let error = OpenAIError(status: head.status, message: "The upstream '\(head.endpoint)' answered \(head.status) without an OpenAI error body.",
                                        type: "upstream_error", code: "upstream_status_\(head.status)")
                headers.set("Content-Type", "application/json")
                response = HTTPResponse(status: head.status, headers: headers, body: error.json.serialized())
                outcome.upstreamError = ["error": ["message": .string("the upstream answered \(head.status) without an OpenAI error body"),
                                                   "code": .string("upstream_status_\(head.status)")]]
            } else {
                response = HTTPResponse(status: head.status, headers: headers, body: s.body)
            }
        } else {
            let error = OpenAIError.upstreamUnavailable("The upstream closed without a response.")
            outcome.status = error.status
            outcome.error = error
            response = context.errorResponse(error)
        }
        ledger.finish(context, outcome)
        if let response { writer.send(response) }
    }

    // MARK: helpers

    /// True when a stream's transfer ended cleanly but the stream did not: neither `[DONE]` nor any choice's
    /// `finish_reason` nor an error event came (bytes that could not be read leave it undecided: false).
    private static func endedWithoutItsEnd(_ s: State, _ failure: UpstreamError?) -> Bool {
        guard failure == nil, s.interruption == nil, !s.parseFailed, !s.logTruncated, !s.assembler.sawDone,
              s.assembler.streamError == nil else { return false }
        let choices = s.assembler.assembled()?["choices"]?.arrayValue ?? []
        return !choices.contains { ($0["finish_reason"] ?? .null) != .null }
    }

    /// Why a failed upstream answer that has not reached the client may go to a fallback target, or nil when it
    /// may not (a success, an answer the client must see as is, a cancellation, a shutdown).
    private static func fallbackReason(_ s: State, _ failure: UpstreamError?) -> String? {
        if let failure {
            switch failure {
            case .connectFailed, .timedOut, .transferFailed: return "upstream_\(failure.kind)"
            case .cancelled, .shutdown, .invalidRequest: return nil
            }
        }
        guard let head = s.head, !s.bodyTooLarge else { return nil }
        return head.status >= 500 || head.status == 429 ? "upstream_status_\(head.status)" : nil
    }

    /// The upstream's headers a client may use (rate limits, processing time), never hop-by-hop ones.
    private func responseHeaders(from head: UpstreamResponseHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add("x-request-id", context.requestID)
        for (name, value) in head.headers where !value.utf8.contains(where: { ($0 < 0x20 && $0 != 0x09) || $0 == 0x7F }) {
            // Control characters (an ESC in a request id) would reach the client's logs and terminals: such a
            // header is not passed on.
            if name.hasPrefixIgnoringASCIICase("x-ratelimit-") || name.hasPrefixIgnoringASCIICase("openai-")
                || name.equalsIgnoringASCIICase("retry-after") {
                headers.add(name, value)
            } else if name.equalsIgnoringASCIICase("x-request-id") {
                headers.add("x-upstream-request-id", value)
            }
        }
        headers.add("x-flywheel-route", context.route ?? "upstream")
        headers.add("x-flywheel-upstream", head.endpoint)
        for (name, value) in context.decision?.headers ?? [] { headers.add(name, value) }
        return headers
    }

    /// The error a client sees for a failed transfer, and the detail only the log keeps: transport messages
    /// name the upstream's address and port, which are the operator's business, not the client's.
    static func clientError(for error: UpstreamError) -> (OpenAIError, detail: String?) {
        switch error {
        case .timedOut(let endpoint, let phase, let seconds):
            return (.upstreamTimeout("The upstream '\(endpoint)' timed out (\(phase), after \(seconds) s)."), nil)
        case .connectFailed(let endpoint, let reason) where reason.cause == .outOfDescriptors:
            return (.overloaded("The gateway is out of file descriptors; retry shortly."),
                    "Could not connect to the upstream '\(endpoint)': \(reason) (out of file descriptors)")
        case .connectFailed(let endpoint, let reason):
            return (.upstreamUnavailable("The upstream '\(endpoint)' could not be reached (\(error.publicSummary))."),
                    "Could not reach the upstream '\(endpoint)': \(reason)")
        case .transferFailed(let endpoint, let reason):
            return (.upstreamUnavailable("The transfer from the upstream '\(endpoint)' failed (\(error.publicSummary))."),
                    "The transfer from upstream '\(endpoint)' failed: \(reason)")
        case .invalidRequest(let message):
            return (.serverError("The gateway could not build the upstream request."),
                    "The gateway could not build the upstream request: \(message)")
        case .cancelled:
            return (.upstreamUnavailable("The upstream transfer was cancelled."), nil)
        case .shutdown:
            return (.serverShutdown(), nil)
        }
    }
}

extension UpstreamError {
    var isCancellation: Bool { if case .cancelled = self { return true }; return false }

    var endpointName: String? {
        switch self {
        case .connectFailed(let e, _), .timedOut(let e, _, _), .transferFailed(let e, _): return e
        default: return nil
        }
    }

    var kind: String {
        switch self {
        case .connectFailed: return "connect"
        case .timedOut: return "timeout"
        case .transferFailed: return "transfer"
        case .cancelled: return "cancelled"
        case .invalidRequest: return "invalid_request"
        case .shutdown: return "shutdown"
        }
    }
}
