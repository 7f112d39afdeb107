import FlywheelHTTP
import FlywheelJSON
import Synchronization

/// An OpenAI-compatible upstream in process, on 127.0.0.1 and a free port, served by FlywheelHTTP's own server.
///
/// Answers are computed from the request, so a test knows them in advance:
/// - `POST /v1/chat/completions` echoes the last user message; usage counts words (prompt: every message's
///   words, completion: the reply's). With `"stream": true`: a role chunk, one chunk per word, a finish chunk,
///   a usage chunk when `stream_options.include_usage`, then `data: [DONE]`.
/// - `POST /v1/completions` echoes the prompt the same way (`text_completion` objects).
/// - `POST /v1/embeddings`: one small vector per input (`[words, bytes, 0.5]`), usage in words.
/// - `GET /v1/models`: the `models` given at start.
///
/// Faults are scripted ahead (`enqueue`) and taken by the next POSTs in order. Every request is recorded
/// before it is answered, and `requestsReceived` counts them, so a test can wait for "n requests" instead of
/// sleeping. Thread-safe.
public final class FakeUpstream: Sendable {
    /// What the next inference request gets instead of its normal answer.
    public enum Fault: Sendable {
        /// A JSON error with this status (e.g. 503 to be retried, 400 to be passed on).
        case status(Int)
        /// No answer until `releaseHanging()` (then the normal one), or until the client leaves.
        case hang
        /// A 200 event stream of chat chunks that never ends: one word after another until the client leaves.
        case streamForever
        /// A 200 event stream: the role chunk and `words` word chunks, then the connection is closed with the
        /// stream unfinished (no finish chunk, no `[DONE]`, no last chunk).
        case closeMidStream(afterWords: Int)
    }

    /// Event names counted in `events`.
    public enum Event {
        /// Every request, counted when it arrives.
        public static let request = "request"
        /// A `.streamForever` or `.hang` answer ended because its client left.
        public static let clientLeft = "client-left"
        /// A `.hang` request is parked.
        public static let hanging = "hanging"
    }

    private struct State {
        var faults: [Fault] = []
        var received: [FakeUpstreamRequest] = []
        var hanging: [(request: HTTPRequest, writer: HTTPResponseWriter)] = []
        var served = 0
    }

    private let server: HTTPServer
    private let responder: Responder
    /// Counts of `Event`s; wait on them.
    public let events = EventCounts()
    public let models: [String]

    /// Starts the fake (one event loop).
    public init(models: [String] = ["fake-model"]) throws {
        self.models = models
        var configuration = HTTPServerConfiguration(host: "127.0.0.1", port: 0)
        configuration.eventLoopCount = 1
        responder = Responder(events: events, models: models)
        server = HTTPServer(configuration: configuration, responder: responder)
        try server.start()
    }

    deinit { stop() }

    public var port: UInt16 { server.port }
    /// `http://127.0.0.1:<port>/v1`, an upstream's `base_url`.
    public var baseURL: String { "http://127.0.0.1:\(port)/v1" }

    /// Scripts the next `count` inference requests (after those already scripted) to get `fault`.
    public func enqueue(_ fault: Fault, count: Int = 1) {
        responder.state.withLock { $0.faults += Array(repeating: fault, count: count) }
    }

    /// Every request received so far, in order.
    public var requests: [FakeUpstreamRequest] { responder.state.withLock { $0.received } }

    /// Blocks until `count` requests arrived in total; returns how many did (fewer only if none came in time).
    @discardableResult
    public func waitForRequests(_ count: Int, timeout: Double = 10) -> Int {
        events.wait(Event.request, atLeast: count, timeout: timeout)
    }

    /// Answers every parked `.hang` request normally.
    public func releaseHanging() {
        let parked = responder.state.withLock { s -> [(request: HTTPRequest, writer: HTTPResponseWriter)] in
            defer { s.hanging = [] }
            return s.hanging
        }
        let models = self.models  // not `self`: the last reference must not be dropped on the fake's own loop
        for (request, writer) in parked {
            writer.eventLoop.execute { Responder.answer(request, writer: writer, models: models) }
        }
    }

    /// Stops listening and ends what is still open. Idempotent.
    public func stop() {
        responder.state.withLock { $0.hanging = [] }
        server.shutdown(gracePeriod: 0)
    }

    // MARK: Responder (the fake's event loop)

    /// Writes one word chunk per millisecond on the loop's timer until the response is closed (by the client
    /// leaving or the fake stopping). Loop thread only; each scheduled tick keeps it alive until the next.
    private final class WordTicker {
        let writer: HTTPResponseWriter
        let chat: FakeResponses.Chat
        var index = 0

        init(writer: HTTPResponseWriter, chat: FakeResponses.Chat) {
            self.writer = writer
            self.chat = chat
        }

        func tick() {
            guard !writer.isClosed else { return }
            writer.write(FakeResponses.event(chat.chunk(delta: ["content": .string("w\(index) ")])))
            index += 1
            _ = writer.eventLoop.schedule(afterMilliseconds: 1) { self.tick() }
        }
    }

    private final class Responder: HTTPResponder {
        let state = Mutex(State())
        let events: EventCounts
        let models: [String]

        init(events: EventCounts, models: [String]) {
            self.events = events
            self.models = models
        }

        func respond(to request: HTTPRequest, writer: HTTPResponseWriter) {
            let fault = state.withLock { s -> Fault? in
                s.received.append(FakeUpstreamRequest(method: request.method, target: request.target,
                                                      headers: request.headers.map { ($0.name, $0.value) }, body: request.body))
                s.served += 1
                guard request.method == "POST", !s.faults.isEmpty else { return nil }
                return s.faults.removeFirst()
            }
            events.add(Event.request)
            switch fault {
            case nil:
                Self.answer(request, writer: writer, models: models)
            case .status(let status):
                let body: JSON = ["error": ["message": .string("fake upstream fault: status \(status)"), "type": "server_error",
                                            "param": nil, "code": nil]]
                writer.send(FakeResponses.json(body, status: status))
            case .hang:
                state.withLock { $0.hanging.append((request, writer)) }
                let events = self.events
                writer.onClose { reason in if reason == .clientDisconnected { events.add(Event.clientLeft) } }
                events.add(Event.hanging)
            case .streamForever:
                streamForever(request, writer: writer)
            case .closeMidStream(let words):
                let chat = FakeResponses.Chat(request)
                writer.startStream(status: 200, headers: FakeResponses.eventStreamHeaders)
                writer.write(FakeResponses.event(chat.chunk(delta: ["role": "assistant", "content": ""])))
                for index in 0..<words {
                    writer.write(FakeResponses.event(chat.chunk(delta: ["content": .string("w\(index) ")])))
                }
                writer.abort()
            }
        }

        /// Writes a word every millisecond (on the loop's timer) until the client leaves.
        private func streamForever(_ request: HTTPRequest, writer: HTTPResponseWriter) {
            let chat = FakeResponses.Chat(request)
            writer.startStream(status: 200, headers: FakeResponses.eventStreamHeaders)
            writer.write(FakeResponses.event(chat.chunk(delta: ["role": "assistant", "content": ""])))
            let events = self.events
            writer.onClose { reason in if reason == .clientDisconnected { events.add(Event.clientLeft) } }
            WordTicker(writer: writer, chat: chat).tick()
        }

        /// The normal answer to `request`.
        static func answer(_ request: HTTPRequest, writer: HTTPResponseWriter, models: [String]) {
            switch (request.method, request.path) {
            case ("GET", "/v1/models"):
                let data = models.map { id -> JSON in ["id": .string(id), "object": "model", "created": 0, "owned_by": "fake"] }
                writer.send(FakeResponses.json(["object": "list", "data": .array(data)]))
            case ("POST", "/v1/chat/completions"):
                FakeResponses.Chat(request).answer(writer)
            case ("POST", "/v1/completions"):
                FakeResponses.Completion(request).answer(writer)
            case ("POST", "/v1/embeddings"):
                writer.send(FakeResponses.embeddings(request))
            default:
                let body: JSON = ["error": ["message": .string("fake upstream: no route \(request.method) \(request.path)"),
                                            "type": "invalid_request_error", "param": nil, "code": "unknown_url"]]
                writer.send(FakeResponses.json(body, status: 404))
            }
        }
    }
}
