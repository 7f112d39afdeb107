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
    private let writer: any ResponseSink
    private let context: RequestContext
    private let stream: Bool
    private let responses: LocalResponses
    /// Where the request goes when this generation fails or stalls before its first token (a policy's
    /// fallback). With one, a stream's head waits for the first token, so that nothing reaches the client
    /// before the model has shown it can answer.
    private let fallback: Fallback?

    private struct State {
        var text = ""
        var firstTextNanos: UInt64?
        var handle: GenerationHandle?
        var promptTokens = 0
        var interruption: RequestOutcome.Interruption?
        var ended = false
        var headSent = false
        /// Handed over to a fallback: nothing more is answered or logged here.
        var abandoned = false
        var budgetTimer: HTTPEventLoopTimer?
    }
    private let state = Mutex(State())

    init(ledger: RequestLedger, writer: any ResponseSink, context: RequestContext, modelName: String,
         stream: Bool, includeUsage: Bool, chat: Bool, fallback: Fallback? = nil) {
        self.ledger = ledger
        self.writer = writer
        self.context = context
        self.stream = stream
        self.fallback = fallback
        self.responses = LocalResponses(chat: chat, requestID: context.requestID, model: modelName,
                                        createdAtMillis: context.createdAtMillis, includeUsageField: includeUsage)
        #if DEBUG
        ExchangeCensus.locals.add(1, ordering: .relaxed)
        #endif
    }

    #if DEBUG
    deinit { ExchangeCensus.locals.subtract(1, ordering: .relaxed) }
    #endif

    /// Queues the generation; answers at once with an error when it cannot be queued (or hands over to the
    /// fallback).
    func start(inference: LocalInference, model: any GenerationModel, request: GenerationRequest) {
        let handle: GenerationHandle
        do {
            handle = try inference.submit(model: model, request: request) { [self] event in self.handle(event) }
        } catch {
            if let fallback, Self.fallbackReason(error).map(fallback.handOver) == true { return }
            return ledger.reject(context, Self.mapError(error), writer: writer)
        }
        state.withLock {
            $0.handle = handle
            $0.promptTokens = request.promptTokens.count
        }
        if stream && fallback == nil { sendStreamHead() }
        if let timer = fallback?.startBudget(on: writer.eventLoop, { [weak self] in self?.firstTokenBudgetExpired() }) {
            state.withLock { s in if s.firstTextNanos == nil && !s.ended { s.budgetTimer = timer } }
        }
        // A client that goes away stops its generation: the slot goes to the next request. At the end of the
        // shutdown grace the server asks the same, and the client is told why.
        writer.onClose { [weak self] reason in self?.interrupted(reason) }
    }

    /// The stream's head and, for chat, the opening chunk with the assistant role (as OpenAI's streams have).
    /// Once only.
    private func sendStreamHead() {
        let first = state.withLock { s -> Bool in
            defer { s.headSent = true }
            return !s.headSent
        }
        if first { writeStreamHead() }
    }

    /// Writes the stream's head: only by whoever set `headSent`.
    private func writeStreamHead() {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/event-stream")
        headers.add("Cache-Control", "no-cache")
        headers.add("x-request-id", context.requestID)
        headers.add("x-flywheel-route", "local")
        for (name, value) in context.decision?.headers ?? [] { headers.add(name, value) }
        writer.startStream(status: 200, headers: headers)
        if responses.chat { send(responses.chunk(text: "", role: true)) }
    }

    /// On the loop: no first token within the budget. Hands over to the next target when there is one
    /// (cancelling this generation, which frees its place); otherwise keeps waiting.
    private func firstTokenBudgetExpired() {
        guard let fallback, fallback.isAvailable() else { return }
        let handle = state.withLock { s -> GenerationHandle? in
            guard s.firstTextNanos == nil, !s.ended, !s.abandoned, s.interruption == nil else { return nil }
            s.abandoned = true
            return s.handle
        }
        guard let handle else { return }
        handle.cancel()
        fallback.takeOver("first_token_budget")
    }

    /// On the loop, from the writer. For a shutdown, what is written here is the last the client gets.
    private func interrupted(_ reason: HTTPCloseReason) {
        let (handle, ended, abandoned) = state.withLock { s -> (GenerationHandle?, Bool, Bool) in
            if s.interruption == nil { s.interruption = reason == .serverShutdown ? .serverShutdown : .clientClosed }
            return (s.handle, s.ended, s.abandoned)
        }
        if abandoned { return }
        if reason == .serverShutdown && !ended {
            writer.end(with: Self.shutdownError, streaming: stream && state.withLock { $0.headSent }, context: context)
        }
        handle?.cancel()
    }

    static let shutdownError = OpenAIError.serverShutdown("The gateway shut down before the generation was complete; retry.")

    // MARK: scheduler thread

    private func handle(_ event: GenerationEvent) {
        switch event {
        case .text(let piece):
            // One lock a token: the text, the first token's time, the budget timer and whether the head is due.
            let (abandoned, timer, headDue) = state.withLock { s -> (Bool, HTTPEventLoopTimer?, Bool) in
                guard !s.abandoned else { return (true, nil, false) }
                s.text += piece
                if s.firstTextNanos == nil { s.firstTextNanos = MonotonicClock.now() }
                let headDue = stream && !s.headSent
                if stream { s.headSent = true }
                defer { s.budgetTimer = nil }
                return (false, s.budgetTimer, headDue)
            }
            if abandoned { return }
            if let timer { cancelOnLoop(timer) }
            if stream {
                if headDue { writeStreamHead() }
                writer.write(responses.textChunkFrame(piece))
            }
        case .finished(let summary):
            let (text, firstText, abandoned, timer) = state.withLock { s in
                s.ended = true
                defer { s.budgetTimer = nil }
                return (s.text, s.firstTextNanos, s.abandoned, s.budgetTimer)
            }
            if abandoned { return }
            if let timer { cancelOnLoop(timer) }
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
                sendStreamHead()
                writer.write(tail)
                writer.endStream()
            } else {
                var response = HTTPResponse.json(body, requestID: context.requestID)
                response.headers.add("x-flywheel-route", "local")
                for (name, value) in context.decision?.headers ?? [] { response.headers.add(name, value) }
                writer.send(response)
            }
        case .failed(let failure):
            let (text, firstText, interruption, handle, promptTokens, abandoned, timer) = state.withLock { s in
                s.ended = true
                defer { s.budgetTimer = nil }
                return (s.text, s.firstTextNanos, s.interruption, s.handle, s.promptTokens, s.abandoned, s.budgetTimer)
            }
            if abandoned { return }
            if let timer { cancelOnLoop(timer) }
            if firstText == nil, interruption == nil, let fallback, let reason = Self.fallbackReason(failure), fallback.handOver(reason) {
                state.withLock { $0.abandoned = true }
                return
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
                if stream { sendStreamHead(); writer.endStream() }
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
            // A stream whose head is gone keeps its 200 and reports the error in-band; one whose head waited for
            // a first token that never came gets a plain error response.
            let headSent = state.withLock { $0.headSent }
            if !(stream && headSent) { outcome.status = error.status }
            finish(outcome, firstText: firstText)
            writer.end(with: error, streaming: stream && headSent, context: context)
        }
    }

    /// Cancels a timer of the connection's loop from any thread.
    private func cancelOnLoop(_ timer: HTTPEventLoopTimer) {
        let loop = writer.eventLoop
        if loop.inEventLoop { loop.cancel(timer) } else { loop.execute { loop.cancel(timer) } }
    }

    /// Why a generation that failed before its first token may go to a fallback target, or nil when it may not
    /// (a bad request is bad everywhere; a cancellation or shutdown is not the model's failure).
    static func fallbackReason(_ error: GenerationError) -> String? {
        switch error {
        case .queueFull: return "overloaded"
        case .evaluationFailed: return "local_error"
        case .cacheBudgetExceeded: return OpenAIError.localModelLimit
        case .contextLengthExceeded, .emptyPrompt, .shuttingDown, .cancelled: return nil
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
        case .cacheBudgetExceeded:
            return .invalidRequest(error.description, param: "max_tokens", code: OpenAIError.localModelLimit)
        }
    }
}
