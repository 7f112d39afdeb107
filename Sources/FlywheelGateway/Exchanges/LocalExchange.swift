import FlywheelEngine
import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import Synchronization

/// One request answered by a local model. Generation events arrive on the inference scheduler's thread, a
/// client disconnect on the connection's event loop; the little mutable state sits behind one lock. Streams
/// are written token by token as the scheduler produces them. Ends exactly once with one `RequestOutcome`.
final class LocalExchange: Sendable {
    private let ledger: RequestLedger
    private let writer: HTTPResponseWriter
    private let context: RequestContext
    private let stream: Bool
    private let responses: LocalResponses

    private struct State {
        var text = ""
        var firstTextNanos: UInt64?
        var handle: GenerationHandle?
        var promptTokens = 0
        var interruption: RequestOutcome.Interruption?
        var ended = false
    }
    private let state = Mutex(State())

    init(ledger: RequestLedger, writer: HTTPResponseWriter, context: RequestContext, modelName: String,
         stream: Bool, includeUsage: Bool, chat: Bool) {
        self.ledger = ledger
        self.writer = writer
        self.context = context
        self.stream = stream
        self.responses = LocalResponses(chat: chat, requestID: context.requestID, model: modelName,
                                        createdAtMillis: context.createdAtMillis, includeUsageField: includeUsage)
        #if DEBUG
        ExchangeCensus.locals.add(1, ordering: .relaxed)
        #endif
    }

    #if DEBUG
    deinit { ExchangeCensus.locals.subtract(1, ordering: .relaxed) }
    #endif

    /// Queues the generation; answers at once with an error when it cannot be queued.
    func start(inference: LocalInference, model: any GenerationModel, request: GenerationRequest) {
        let handle: GenerationHandle
        do {
            handle = try inference.submit(model: model, request: request) { [self] event in self.handle(event) }
        } catch {
            return ledger.reject(context, Self.mapError(error), writer: writer)
        }
        state.withLock {
            $0.handle = handle
            $0.promptTokens = request.promptTokens.count
        }
        if stream {
            var headers = HTTPHeaders()
            headers.add("Content-Type", "text/event-stream")
            headers.add("Cache-Control", "no-cache")
            headers.add("x-request-id", context.requestID)
            headers.add("x-flywheel-route", "local")
            writer.startStream(status: 200, headers: headers)
            // Chat streams open with the assistant role, as OpenAI's do; completions streams have no role.
            if responses.chat { send(responses.chunk(text: "", role: true)) }
        }
        // A client that goes away stops its generation: the slot goes to the next request. At the end of the
        // shutdown grace the server asks the same, and the client is told why.
        writer.onClose { [weak self] reason in self?.interrupted(reason) }
    }

    /// On the loop, from the writer. For a shutdown, what is written here is the last the client gets.
    private func interrupted(_ reason: HTTPCloseReason) {
        let (handle, ended) = state.withLock { s -> (GenerationHandle?, Bool) in
            if s.interruption == nil { s.interruption = reason == .serverShutdown ? .serverShutdown : .clientClosed }
            return (s.handle, s.ended)
        }
        if reason == .serverShutdown && !ended {
            writer.end(with: Self.shutdownError, streaming: stream, requestID: context.requestID)
        }
        handle?.cancel()
    }

    static let shutdownError = OpenAIError.serverShutdown("The gateway shut down before the generation was complete; retry.")

    // MARK: scheduler thread

    private func handle(_ event: GenerationEvent) {
        switch event {
        case .text(let piece):
            state.withLock { s in
                s.text += piece
                if s.firstTextNanos == nil { s.firstTextNanos = MonotonicClock.now() }
            }
            if stream { writer.write(responses.textChunkFrame(piece)) }
        case .finished(let summary):
            let (text, firstText) = state.withLock { s in
                s.ended = true
                return (s.text, s.firstTextNanos)
            }
            let body = responses.completion(text: text, summary: summary)
            var outcome = RequestOutcome(status: 200)
            outcome.responseText = body.serializedString()
            outcome.usage = .init(prompt: summary.promptTokens, completion: summary.completionTokens,
                                  total: summary.promptTokens + summary.completionTokens)
            outcome.serviceSeconds = summary.queueSeconds + summary.promptSeconds + summary.decodeSeconds
            finish(outcome, firstText: firstText)
            if stream {
                var tail = ServerSentEvents.encode(data: responses.chunk(text: responses.chat ? nil : "", finish: summary.finishReason).serializedString())
                if responses.includeUsageField { tail += ServerSentEvents.encode(data: responses.usageChunk(summary).serializedString()) }
                tail += ServerSentEvents.encode(data: "[DONE]")
                writer.write(tail)
                writer.endStream()
            } else {
                var response = HTTPResponse.json(body, requestID: context.requestID)
                response.headers.add("x-flywheel-route", "local")
                writer.send(response)
            }
        case .failed(let failure):
            let (text, firstText, interruption, handle, promptTokens) = state.withLock { s in
                s.ended = true
                return (s.text, s.firstTextNanos, s.interruption, s.handle, s.promptTokens)
            }
            var outcome = RequestOutcome(status: 200)
            if let handle, handle.generatedTokens > 0 {
                // What was produced before the end is accounted for (and priced), marked incomplete.
                outcome.usage = .init(prompt: promptTokens, completion: handle.generatedTokens,
                                      total: promptTokens + handle.generatedTokens)
            }
            if !text.isEmpty {
                // What the client already got is kept, marked incomplete.
                outcome.responseText = responses.partialCompletion(text: text).serializedString()
            }
            if interruption == .clientClosed || (failure == .cancelled && interruption == nil) {
                outcome.status = 499
                outcome.error = .clientClosed()
                outcome.interruption = .clientClosed
                finish(outcome, firstText: firstText)
                if stream { writer.endStream() }
                return
            }
            if interruption == .serverShutdown {
                // The client was told when the grace ran out; only the log is left to write.
                outcome.error = Self.shutdownError
                outcome.interruption = .serverShutdown
                if !stream { outcome.status = Self.shutdownError.status }
                return finish(outcome, firstText: firstText)
            }
            let error = Self.mapError(failure)
            if failure == .shuttingDown { outcome.interruption = .serverShutdown }
            outcome.error = error
            // A stream's head is long gone: it keeps its 200 and reports the error in-band.
            if !stream { outcome.status = error.status }
            finish(outcome, firstText: firstText)
            writer.end(with: error, streaming: stream, requestID: context.requestID)
        }
    }

    private func finish(_ outcome: RequestOutcome, firstText: UInt64?) {
        var outcome = outcome
        outcome.upstream = "local"
        outcome.modelServed = responses.model
        outcome.firstByteNanos = firstText
        ledger.finish(context, outcome)
    }

    private func send(_ chunk: JSON) {
        writer.write(ServerSentEvents.encode(data: chunk.serializedString()))
    }

    static func mapError(_ error: GenerationError) -> OpenAIError {
        switch error {
        case .contextLengthExceeded:
            // A backstop: Gateway+Local checks the prompt against the context first, naming the right field.
            return .invalidRequest(error.description, code: "context_length_exceeded")
        case .emptyPrompt:
            return .invalidRequest(error.description)
        case .queueFull:
            return .overloaded(error.description)
        case .shuttingDown:
            return .serverShutdown(error.description)
        case .cancelled:
            return .clientClosed(error.description)
        case .evaluationFailed:
            return .serverError(error.description)
        }
    }
}
