import FlywheelHTTP
import FlywheelJSON
import FlywheelSockets
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// One client request relayed to an upstream. Upstream events arrive on the upstream client's thread, a client
/// disconnect on an event-loop thread; the mutable state sits behind one lock, taken briefly per event.
/// A stream is forwarded chunk by chunk as it arrives and assembled on the side for the log.
final class ProxyExchange: UpstreamResponseHandler {
    private let gateway: Gateway
    private let writer: HTTPResponseWriter
    private let requestID: String
    /// Nil for requests that are not logged (e.g. `GET /v1/models`).
    private let context: RequestContext?
    private let wantsStream: Bool

    private struct State {
        var transfer: UpstreamTransfer?
        var head: UpstreamResponseHead?
        var streaming = false
        var body: [UInt8] = []
        var bodyTooLarge = false
        var parser = ServerSentEventParser()
        var assembler = StreamAssembler()
        var parseFailed = false
        var clientGone = false
    }
    private let state = Mutex(State())

    init(gateway: Gateway, writer: HTTPResponseWriter, requestID: String, context: RequestContext?, stream: Bool) {
        self.gateway = gateway
        self.writer = writer
        self.requestID = requestID
        self.context = context
        self.wantsStream = stream
    }

    func start(_ request: UpstreamRequest) {
        guard let client = gateway.upstreams.client(for: writer.eventLoop) else {
            return upstreamDidComplete(.failure(.shutdown), timing: UpstreamTiming(startedNanos: 0, firstByteNanos: nil, finishedNanos: 0))
        }
        let transfer = client.start(request, handler: self)
        state.withLock { $0.transfer = transfer }
        // A client that goes away cancels the upstream transfer: no tokens are paid for that nobody reads.
        writer.onClose { [weak self] _ in self?.clientDisconnected() }
    }

    private func clientDisconnected() {
        let transfer = state.withLock { s -> UpstreamTransfer? in
            s.clientGone = true
            return s.transfer
        }
        transfer?.cancel()
    }

    // MARK: UpstreamResponseHandler (upstream client thread)

    func upstreamDidReceiveHead(_ head: UpstreamResponseHead) {
        let isEventStream = head.value(for: "content-type")?.hasPrefixIgnoringASCIICase("text/event-stream") ?? false
        let startStream = wantsStream && head.status == 200 && isEventStream
        state.withLock {
            $0.head = head
            $0.streaming = startStream
        }
        if startStream {
            var headers = responseHeaders(from: head)
            headers.set("Content-Type", "text/event-stream")
            headers.set("Cache-Control", "no-cache")
            writer.startStream(status: 200, headers: headers)
        }
        for _ in 0..<max(0, head.attempts - 1) {
            gateway.metrics.upstreamError(upstream: head.endpoint, kind: "retried")
        }
        if head.status >= 500 || head.status == 429 {
            gateway.metrics.upstreamError(upstream: head.endpoint, kind: "status_\(head.status)")
        }
    }

    func upstreamDidReceiveBody(_ chunk: [UInt8]) {
        let (forward, cancel) = state.withLock { s -> (Bool, UpstreamTransfer?) in
            if s.streaming {
                if !s.parseFailed {
                    do {
                        for event in try s.parser.feed(chunk) { s.assembler.add(data: event.data) }
                    } catch {
                        s.parseFailed = true  // still forwarded; only the log's copy is lost
                    }
                }
                return (true, nil)
            }
            guard !s.bodyTooLarge else { return (false, nil) }
            if s.body.count + chunk.count > gateway.configuration.server.maxResponseBytes {
                s.bodyTooLarge = true
                s.body = []
                return (false, s.transfer)
            }
            s.body.append(contentsOf: chunk)
            return (false, nil)
        }
        if forward { writer.write(chunk) }
        cancel?.cancel()
    }

    func upstreamDidComplete(_ result: Result<UpstreamTiming, UpstreamError>, timing: UpstreamTiming) {
        let s = state.withLock { $0 }
        var status: Int
        var responseJSON: JSON?
        var responseText: String?
        var error: OpenAIError?
        var upstreamErrorBody: JSON?

        if s.streaming {
            status = 200
            if case .failure(let failure) = result {
                if s.clientGone {
                    status = 499
                } else {
                    // The status line is long gone; tell the client in-band, the way OpenAI does mid-stream.
                    let e = Self.mapError(failure)
                    error = e
                    writer.write(ServerSentEvents.encode(data: e.json.serializedString()))
                }
            }
            writer.endStream()
            responseJSON = s.assembler.assembled()
            if let streamError = s.assembler.streamError { upstreamErrorBody = ["error": streamError] }
        } else if s.bodyTooLarge {
            let e = OpenAIError.upstreamUnavailable("The upstream response exceeded the gateway's limit of \(gateway.configuration.server.maxResponseBytes) bytes.")
            error = e
            status = e.status
            writer.send(e.response(requestID: requestID))
        } else if case .failure(let failure) = result {
            if s.clientGone || failure.isCancellation {
                status = 499  // client closed the request, as nginx logs it
                error = .clientClosed()
            } else {
                let e = Self.mapError(failure)
                error = e
                status = e.status
                writer.send(e.response(requestID: requestID))
            }
            if let endpoint = failure.endpointName { gateway.metrics.upstreamError(upstream: endpoint, kind: failure.kind) }
        } else if let head = s.head {
            status = head.status
            var headers = responseHeaders(from: head)
            let contentType = head.value(for: "content-type") ?? "application/json"
            headers.set("Content-Type", contentType)
            writer.send(HTTPResponse(status: head.status, headers: headers, body: s.body))
            // The log keeps the upstream's bytes as sent; the parsed copy only feeds usage, model and errors.
            if !s.body.isEmpty { responseText = String(decoding: s.body, as: UTF8.self) }
            if contentType.lowercased().contains("json"), let parsed = try? JSONParser.parse(s.body) {
                responseJSON = parsed
                if head.status >= 400 { upstreamErrorBody = parsed }
            }
        } else {
            let e = OpenAIError.upstreamUnavailable("The upstream closed without a response.")
            error = e
            status = e.status
            writer.send(e.response(requestID: requestID))
        }

        guard let context else { return }
        record(context: context, status: status, head: s.head, timing: timing, responseJSON: responseJSON,
               responseText: responseText, error: error, upstreamErrorBody: upstreamErrorBody, servedModel: s.assembler.servedModel)
    }

    // MARK: helpers

    private func record(context: RequestContext, status: Int, head: UpstreamResponseHead?, timing: UpstreamTiming,
                        responseJSON: JSON?, responseText: String?, error: OpenAIError?, upstreamErrorBody: JSON?, servedModel: String?) {
        let now = MonotonicClock.now()
        let totalSeconds = Double(now &- context.receivedAtNanos) / 1e9
        let upstreamSeconds = Double(timing.finishedNanos &- timing.startedNanos) / 1e9
        var r = context.record(status: status, latencyMillis: totalSeconds * 1000)
        r.upstream = head?.endpoint
        r.attempts = head?.attempts ?? 0
        r.upstreamMillis = upstreamSeconds * 1000
        let firstByteSeconds = timing.firstByteNanos.map { Double($0 &- context.receivedAtNanos) / 1e9 }
        r.timeToFirstTokenMillis = firstByteSeconds.map { $0 * 1000 }
        r.responseJSON = responseText ?? responseJSON?.serializedString()
        r.modelServed = responseJSON?["model"]?.stringValue ?? servedModel
        if let usage = responseJSON?["usage"] {
            r.promptTokens = usage["prompt_tokens"]?.intValue
            r.completionTokens = usage["completion_tokens"]?.intValue
            r.totalTokens = usage["total_tokens"]?.intValue
        }
        r.costUSD = gateway.prices.cost(requestedModel: context.modelRequested, servedModel: r.modelServed,
                                        promptTokens: r.promptTokens, completionTokens: r.completionTokens)
        if let error {
            r.setError(error)
        } else if let body = upstreamErrorBody?["error"] {
            r.errorType = body["code"]?.stringValue ?? body["type"]?.stringValue ?? "upstream_error"
            r.errorMessage = body["message"]?.stringValue ?? body.serializedString()
        } else if status >= 400 {
            r.errorType = "upstream_status_\(status)"
        }
        gateway.log.enqueue(r)
        gateway.metrics.requestFinished(endpoint: context.endpoint, model: context.modelRequested, route: context.route, status: status,
                                        seconds: totalSeconds, overheadSeconds: max(0, totalSeconds - upstreamSeconds),
                                        firstByteSeconds: firstByteSeconds)
    }

    /// The upstream's headers a client may use (rate limits, processing time), never hop-by-hop ones.
    private func responseHeaders(from head: UpstreamResponseHead) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add("x-request-id", requestID)
        for (name, value) in head.headers {
            if name.hasPrefixIgnoringASCIICase("x-ratelimit-") || name.hasPrefixIgnoringASCIICase("openai-")
                || name.equalsIgnoringASCIICase("retry-after") {
                headers.add(name, value)
            } else if name.equalsIgnoringASCIICase("x-request-id") {
                headers.add("x-upstream-request-id", value)
            }
        }
        headers.add("x-flywheel-upstream", head.endpoint)
        return headers
    }

    static func mapError(_ error: UpstreamError) -> OpenAIError {
        switch error {
        case .timedOut(let endpoint, let phase, let seconds):
            return .upstreamTimeout("The upstream '\(endpoint)' timed out (\(phase), after \(seconds) s).")
        case .connectFailed(let endpoint, let message):
            return .upstreamUnavailable("Could not reach the upstream '\(endpoint)': \(message)")
        case .transferFailed(let endpoint, let message):
            return .upstreamUnavailable("The transfer from upstream '\(endpoint)' failed: \(message)")
        case .invalidRequest(let message):
            return .serverError("The gateway could not build the upstream request: \(message)")
        case .cancelled:
            return .upstreamUnavailable("The upstream transfer was cancelled.")
        case .shutdown:
            return .overloaded("The gateway is shutting down.")
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
