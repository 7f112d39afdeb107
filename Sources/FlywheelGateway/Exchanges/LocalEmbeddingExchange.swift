import Dispatch
import FlywheelEngine
import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import Synchronization

/// One `/v1/embeddings` request answered by a local model. The vectors arrive on the inference scheduler's
/// thread, a client disconnect on the connection's event loop; the little mutable state sits behind one lock.
/// The answer goes to the response writer, which queues it to the connection's loop. Ends exactly once with one
/// `RequestOutcome`; the log keeps a capped copy of the answer (`LocalEmbeddingResponse.maxLoggedBytes`).
final class LocalEmbeddingExchange: Sendable {
    private let ledger: RequestLedger
    private let writer: any ResponseSink
    private let context: RequestContext
    private let modelName: String
    private let encoding: LocalEmbeddingRequest.Encoding
    /// Where the request goes when the model is overloaded, fails, or has not answered within the policy's
    /// first-token budget (nothing reaches the client before the whole answer, so any of these may hand over).
    private let fallback: Fallback?

    private struct State {
        var handle: EmbeddingHandle?
        var interruption: RequestOutcome.Interruption?
        var ended = false
        /// Handed over to a fallback: nothing more is answered or logged here.
        var abandoned = false
        var budgetTimer: HTTPEventLoopTimer?
    }
    private let state = Mutex(State())

    /// Answers with more floats than this are rendered off the scheduler thread, so generations keep stepping.
    static let renderInlineFloats = 1 << 16
    /// Tokenizing large inputs and rendering large answers; neither belongs on an event loop or the scheduler.
    static let workQueue = DispatchQueue(label: "flywheel.embeddings", attributes: .concurrent)

    init(ledger: RequestLedger, writer: any ResponseSink, context: RequestContext, modelName: String,
         encoding: LocalEmbeddingRequest.Encoding, fallback: Fallback? = nil) {
        self.ledger = ledger
        self.writer = writer
        self.context = context
        self.modelName = modelName
        self.encoding = encoding
        self.fallback = fallback
    }

    /// Queues the inputs; answers at once with an error when they cannot be queued (or hands over to the
    /// fallback). Any thread.
    func start(inference: LocalInference, model: LocalModel, inputs: [[Int32]]) {
        let promptTokens = inputs.reduce(0) { $0 + $1.count }
        let started = MonotonicClock.now()
        let handle: EmbeddingHandle
        do {
            handle = try inference.embed(model: model, inputs: inputs) { [self] result in
                completed(result, promptTokens: promptTokens, startedNanos: started)
            }
        } catch {
            if let fallback, LocalExchange.fallbackReason(error).map(fallback.handOver) == true { return }
            return ledger.reject(context, LocalExchange.mapError(error), writer: writer)
        }
        state.withLock { $0.handle = handle }
        let loop = writer.eventLoop
        if let fallback {
            let startBudget: @Sendable () -> Void = { [weak self] in
                guard let self, let timer = fallback.startBudget(on: loop, { [weak self] in self?.budgetExpired() }) else { return }
                let keep = state.withLock { s in
                    guard !s.ended, !s.abandoned else { return false }
                    s.budgetTimer = timer
                    return true
                }
                if !keep { loop.cancel(timer) }
            }
            if loop.inEventLoop { startBudget() } else { loop.execute(startBudget) }
        }
        // A client that goes away stops the batch before its next input. At the end of the shutdown grace the
        // server asks the same, and the client is told why.
        writer.onClose { [weak self] reason in self?.interrupted(reason) }
    }

    /// On the loop: no answer within the budget. Hands over to the next target when there is one (cancelling
    /// this batch); otherwise keeps waiting.
    private func budgetExpired() {
        guard let fallback, fallback.isAvailable() else { return }
        let handle = state.withLock { s -> EmbeddingHandle? in
            guard !s.ended, !s.abandoned, s.interruption == nil else { return nil }
            s.abandoned = true
            s.budgetTimer = nil
            return s.handle
        }
        guard let handle else { return }
        handle.cancel()
        fallback.takeOver("first_token_budget")
    }

    /// On the loop, from the writer. For a shutdown, what is written here is the last the client gets.
    private func interrupted(_ reason: HTTPCloseReason) {
        let (handle, ended, abandoned) = state.withLock { s -> (EmbeddingHandle?, Bool, Bool) in
            if s.interruption == nil { s.interruption = reason == .serverShutdown ? .serverShutdown : .clientClosed }
            return (s.handle, s.ended, s.abandoned)
        }
        if abandoned { return }
        if reason == .serverShutdown && !ended { writer.end(with: Self.shutdownError, streaming: false, context: context) }
        handle?.cancel()
    }

    static let shutdownError = OpenAIError.serverShutdown("The gateway shut down before the embeddings were complete; retry.")

    // MARK: scheduler thread

    private func completed(_ result: Result<[[Float]], GenerationError>, promptTokens: Int, startedNanos: UInt64) {
        let readyNanos = MonotonicClock.now()
        let (interruption, abandoned, timer) = state.withLock { s in
            s.ended = true
            defer { s.budgetTimer = nil }
            return (s.interruption, s.abandoned, s.budgetTimer)
        }
        if abandoned { return }
        if let timer { cancelOnLoop(timer) }
        var outcome = RequestOutcome(status: 200)
        outcome.upstream = "local"
        outcome.modelServed = modelName
        outcome.serviceSeconds = Double(readyNanos &- startedNanos) / 1e9

        let vectors: [[Float]]
        switch result {
        case .success(let v):
            vectors = v
            outcome.usage = .init(prompt: promptTokens, total: promptTokens)
            outcome.firstByteNanos = readyNanos
        case .failure(let failure):
            if interruption == nil, let fallback, let reason = LocalExchange.fallbackReason(failure), fallback.handOver(reason) {
                state.withLock { $0.abandoned = true }
                return
            }
            if interruption == .clientClosed || (failure == .cancelled && interruption == nil) {
                return clientLeft(outcome)
            }
            if interruption == .serverShutdown { return shutDown(outcome) }
            let error = LocalExchange.mapError(failure)
            if failure == .shuttingDown { outcome.interruption = .serverShutdown }
            outcome.status = error.status
            outcome.error = error
            ledger.finish(context, outcome)
            writer.send(context.errorResponse(error))
            return
        }
        // The work is done (and counted) even when nobody is left to read it.
        if interruption == .clientClosed { return clientLeft(outcome) }
        if interruption == .serverShutdown { return shutDown(outcome) }
        let floats = vectors.first.map { $0.count * vectors.count } ?? 0
        let done = outcome
        if floats <= Self.renderInlineFloats {
            answer(vectors, outcome: done, promptTokens: promptTokens)
        } else {
            Self.workQueue.async { [self] in answer(vectors, outcome: done, promptTokens: promptTokens) }
        }
    }

    private func answer(_ vectors: [[Float]], outcome: RequestOutcome, promptTokens: Int) {
        var outcome = outcome
        let rendered = LocalEmbeddingResponse.render(vectors, encoding: encoding, model: modelName, promptTokens: promptTokens)
        outcome.responseText = rendered.logged
        outcome.responseTruncated = rendered.loggedTruncated
        ledger.finish(context, outcome)
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        headers.add("x-request-id", context.requestID)
        headers.add("x-flywheel-route", "local")
        for (name, value) in context.decision?.headers ?? [] { headers.add(name, value) }
        writer.send(HTTPResponse(status: 200, headers: headers, body: rendered.body))
    }

    private func clientLeft(_ outcome: RequestOutcome) {
        var outcome = outcome
        outcome.status = 499
        outcome.error = .clientClosed()
        outcome.interruption = .clientClosed
        ledger.finish(context, outcome)
    }

    /// The client was told when the grace ran out; only the log is left to write.
    private func shutDown(_ outcome: RequestOutcome) {
        var outcome = outcome
        outcome.status = Self.shutdownError.status
        outcome.error = Self.shutdownError
        outcome.interruption = .serverShutdown
        ledger.finish(context, outcome)
    }

    /// Cancels a timer of the connection's loop from any thread.
    private func cancelOnLoop(_ timer: HTTPEventLoopTimer) {
        let loop = writer.eventLoop
        if loop.inEventLoop { loop.cancel(timer) } else { loop.execute { loop.cancel(timer) } }
    }
}
