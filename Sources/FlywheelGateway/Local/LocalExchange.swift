import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON
import FlywheelSockets
import FlywheelStore
import Synchronization

/// One request answered by a local model. Generation events arrive on the inference scheduler's
/// thread, a client disconnect on the connection's event loop; the little mutable state sits behind
/// one lock. Streams are written token by token as the scheduler produces them.
final class LocalExchange: Sendable {
    private let gateway: Gateway
    private let writer: HTTPResponseWriter
    private let context: RequestContext
    private let options: LocalGenerationOptions
    private let responses: LocalResponses

    private struct State {
        var text = ""
        var firstTextNanos: UInt64?
        var handle: GenerationHandle?
        var clientGone = false
    }
    private let state = Mutex(State())

    init(gateway: Gateway, writer: HTTPResponseWriter, context: RequestContext, entry: LocalModelEntry,
         options: LocalGenerationOptions, chat: Bool) {
        self.gateway = gateway
        self.writer = writer
        self.context = context
        self.options = options
        self.responses = LocalResponses(chat: chat, requestID: context.requestID, model: entry.name,
                                        createdAtMillis: context.createdAtMillis)
    }

    /// Queues the generation; answers at once with an error when it cannot be queued.
    func start(scheduler: InferenceScheduler, entry: LocalModelEntry, request: GenerationRequest) {
        let handle: GenerationHandle
        do {
            handle = try scheduler.submit(model: entry.model, request: request) { [self] event in self.handle(event) }
        } catch {
            return gateway.fail(context, Self.mapError(error), writer: writer)
        }
        state.withLock { $0.handle = handle }
        if options.stream {
            var headers = HTTPHeaders()
            headers.add("Content-Type", "text/event-stream")
            headers.add("Cache-Control", "no-cache")
            headers.add("x-request-id", context.requestID)
            headers.add("x-flywheel-route", "local")
            writer.startStream(status: 200, headers: headers)
            // Chat streams open with the assistant role, as OpenAI's do; completions streams have no role.
            if responses.chat { send(responses.chunk(text: "", role: true, includeUsageField: options.includeUsage)) }
        }
        // A client that goes away stops its generation: the slot goes to the next request.
        writer.onClose { [weak self] _ in self?.clientDisconnected() }
    }

    private func clientDisconnected() {
        let handle = state.withLock { s -> GenerationHandle? in
            s.clientGone = true
            return s.handle
        }
        handle?.cancel()
    }

    // MARK: scheduler thread

    private func handle(_ event: GenerationEvent) {
        switch event {
        case .text(let piece):
            state.withLock { s in
                s.text += piece
                if s.firstTextNanos == nil { s.firstTextNanos = MonotonicClock.now() }
            }
            if options.stream { send(responses.chunk(text: piece, includeUsageField: options.includeUsage)) }
        case .finished(let summary):
            let text = state.withLock { $0.text }
            let body = responses.completion(text: text, summary: summary)
            if options.stream {
                send(responses.chunk(text: responses.chat ? nil : "", finish: summary.finishReason, includeUsageField: options.includeUsage))
                if options.includeUsage { send(responses.usageChunk(summary)) }
                writer.write(ServerSentEvents.encode(data: "[DONE]"))
                writer.endStream()
            } else {
                var response = HTTPResponse.json(body, requestID: context.requestID)
                response.headers.add("x-flywheel-route", "local")
                writer.send(response)
            }
            record(status: 200, body: body, summary: summary, error: nil)
        case .failed(let failure):
            let gone = state.withLock { $0.clientGone }
            if failure == .cancelled || gone {
                if options.stream { writer.endStream() }
                return record(status: 499, body: nil, summary: nil, error: .clientClosed())
            }
            let e = Self.mapError(failure)
            if options.stream {
                // Headers are long gone: report in-band, as OpenAI does mid-stream.
                writer.write(ServerSentEvents.encode(data: e.json.serializedString()))
                writer.endStream()
                record(status: 200, body: nil, summary: nil, error: e)
            } else {
                writer.send(e.response(requestID: context.requestID))
                record(status: e.status, body: nil, summary: nil, error: e)
            }
        }
    }

    private func send(_ chunk: JSON) {
        writer.write(ServerSentEvents.encode(data: chunk.serializedString()))
    }

    private func record(status: Int, body: JSON?, summary: GenerationSummary?, error: OpenAIError?) {
        let now = MonotonicClock.now()
        let totalSeconds = Double(now &- context.receivedAtNanos) / 1e9
        var r = context.record(status: status, latencyMillis: totalSeconds * 1000)
        r.upstream = "local"
        r.modelServed = responses.model
        let firstText = state.withLock { $0.firstTextNanos }
        let firstByteSeconds = firstText.map { Double($0 &- context.receivedAtNanos) / 1e9 }
        r.timeToFirstTokenMillis = firstByteSeconds.map { $0 * 1000 }
        r.responseJSON = body?.serializedString()
        if let summary {
            r.promptTokens = summary.promptTokens
            r.completionTokens = summary.completionTokens
            r.totalTokens = summary.promptTokens + summary.completionTokens
            r.upstreamMillis = (summary.queueSeconds + summary.promptSeconds + summary.decodeSeconds) * 1000
        }
        r.costUSD = gateway.prices.cost(requestedModel: context.modelRequested, servedModel: r.modelServed,
                                        promptTokens: r.promptTokens, completionTokens: r.completionTokens)
        if let error {
            r.setError(error)
        }
        gateway.log.enqueue(r)
        gateway.metrics.requestFinished(endpoint: context.endpoint, model: context.modelRequested, route: context.route,
                                        status: status, seconds: totalSeconds, overheadSeconds: nil,
                                        firstByteSeconds: firstByteSeconds)
    }

    static func mapError(_ error: GenerationError) -> OpenAIError {
        switch error {
        case .contextLengthExceeded:
            return .invalidRequest(error.description, param: "messages", code: "context_length_exceeded")
        case .queueFull, .shuttingDown:
            return .overloaded(error.description)
        case .cancelled:
            return .clientClosed(error.description)
        case .evaluationFailed:
            return .serverError(error.description)
        }
    }
}
