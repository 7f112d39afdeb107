import Dispatch
import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
import FlywheelStore
import FlywheelUpstream
#if canImport(Glibc)
import Glibc
#endif

/// The OpenAI endpoints that produce a model answer, with the upstream path each maps to.
enum InferenceEndpoint: String, Sendable, CaseIterable {
    case chatCompletions = "/v1/chat/completions"
    case completions = "/v1/completions"
    case embeddings = "/v1/embeddings"

    var upstreamPath: String { String(rawValue.dropFirst(3)) }  // drop "/v1"
}

enum WallClock {
    static func unixMillis() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }
}

extension Gateway {
    /// Limits on tags so a client cannot bloat the log through a header.
    static let maxTags = 32
    static let maxTagLength = 128
    /// Model names longer than this are refused before any lookup (real ones are a few dozen bytes).
    static let maxModelNameBytes = 256
    /// Bodies at least this large are parsed off the event loop, so one big request does not hold up the
    /// other connections of its loop.
    static let offloadParseBytes = 256 << 10
    private static let parseQueue = DispatchQueue(label: "flywheel.json-parse", attributes: .concurrent)

    func requestContext(_ request: GatewayRequest, endpoint: String) -> RequestContext {
        let http = request.http
        var context = RequestContext(
            requestID: request.requestID, endpoint: endpoint, method: http.method,
            receivedAtNanos: http.receivedAtNanos == 0 ? MonotonicClock.now() : http.receivedAtNanos,
            createdAtMillis: WallClock.unixMillis(),
            requestText: String(decoding: http.body, as: UTF8.self))
        context.tags = Self.parseTags(http.headers["x-flywheel-tags"])
        context.clientKeyID = request.clientKeyID
        context.settings = request.settings
        if request.writer.recordsAccess { context.accessLog = request.writer }
        context.logMode = LogMode(header: http.headers[LogMode.header])
        if context.logMode != .full { context.requestText = "" }
        return context
    }

    /// `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: checks the body, then hands the
    /// request to a local model or an upstream route. Every path ends in the ledger exactly once.
    func serveInference(_ request: GatewayRequest, endpoint: InferenceEndpoint) {
        let context = requestContext(request, endpoint: endpoint.rawValue)
        ledger.begin(context)
        if context.logMode == .invalid { return ledger.reject(context, LogMode.invalidHeaderError, writer: request.writer) }
        let body = request.http.body
        guard body.count >= Self.offloadParseBytes else {
            return continueInference(request, endpoint: endpoint, context: context, parsed: Self.parseBody(body))
        }
        let loop = request.writer.eventLoop
        Self.parseQueue.async {
            let parsed = Self.parseBody(body)
            loop.execute { self.continueInference(request, endpoint: endpoint, context: context, parsed: parsed) }
        }
    }

    static func parseBody(_ body: [UInt8]) -> Result<JSON, OpenAIError> {
        do {
            var limits = JSONParser.Limits()
            limits.rejectsDuplicateKeys = true  // the body goes upstream as bytes: one meaning for every parser
            return .success(try JSONParser.parse(body, limits: limits))
        } catch {
            if error.limit != nil {
                return .failure(.invalidRequest("The request body exceeds a limit of this gateway: \(error.message).",
                                                code: "request_too_complex"))
            }
            let message = body.isEmpty
                ? "The request body is empty; expected a JSON object."
                : "We could not parse the JSON body of your request (\(error)). Send valid JSON."
            return .failure(.invalidRequest(message))
        }
    }

    private func continueInference(_ request: GatewayRequest, endpoint: InferenceEndpoint, context: RequestContext,
                                   parsed: Result<JSON, OpenAIError>) {
        var context = context
        let writer = request.writer
        var object: JSONObject
        switch parsed {
        case .failure(let error): return ledger.reject(context, error, writer: writer)
        case .success(.object(let o)): object = o
        case .success: return ledger.reject(context, .invalidRequest("The request body must be a JSON object."), writer: writer)
        }
        context.user = object["user"]?.stringValue
        if let metadata = object["metadata"], case .object = metadata { context.metadataJSON = metadata.serializedString() }

        guard let model = object["model"]?.stringValue, !model.isEmpty else {
            return ledger.reject(context, .invalidRequest("You must provide a model parameter.", param: "model"), writer: writer)
        }
        guard model.utf8.count <= Self.maxModelNameBytes else {
            return ledger.reject(context, .invalidRequest("'model' is longer than \(Self.maxModelNameBytes) bytes.", param: "model"), writer: writer)
        }
        context.modelRequested = model
        if let problem = Self.validate(object, for: endpoint) {
            return ledger.reject(context, problem, writer: writer)
        }
        if let s = object["stream"], s != .null, s.boolValue == nil {
            return ledger.reject(context, .invalidRequest("'stream' must be a boolean.", param: "stream"), writer: writer)
        }
        context.stream = endpoint != .embeddings && object["stream"]?.boolValue == true
        if let key = request.clientKey {
            // The key's rights, then its limits: a request that would be served counts against its rate.
            guard key.allows(model) else { return ledger.reject(context, .modelNotAllowed(model, keyID: key.id), writer: writer) }
            if let refusal = ledger.keyUsage.admit(key, now: Int64(MonotonicClock.now() / 1_000_000_000)) {
                return ledger.reject(context, refusal, writer: writer)
            }
        }
        let implicit: [FeedbackRecord]
        do throws(OpenAIError) {
            context.episodeID = try Self.episode(request.http.headers, object)
            implicit = try Self.implicitFeedback(request.http.headers, object, endpoint: endpoint, requestID: context.requestID)
        } catch {
            return ledger.reject(context, error, writer: writer)
        }
        for feedback in implicit { submitImplicitFeedback(feedback) }

        if let policy = policies.policy(for: model) {
            do throws(OpenAIError) {
                context.decision = try PolicyDecision.decide(policy, headers: request.http.headers, user: context.user,
                                                             episode: context.episodeID, tags: context.tags,
                                                             requestID: context.requestID)
            } catch {
                return ledger.reject(context, error, writer: writer)
            }
            if let d = context.decision { metrics.policyDecision(policy: policy.model, variant: d.chosen, reason: d.reason.rawValue) }
            return PolicyRun(gateway: self, policy: policy, object: object, body: request.http.body, endpoint: endpoint,
                             writer: writer).start(context)
        }
        dispatch(model, object: object, body: request.http.body, endpoint: endpoint, context: context, writer: writer)
    }

    /// Sends a checked request to `target`, a local model or a model the routes send upstream. `fallback`
    /// (from a traffic policy) takes the request over when the target fails before its first token.
    func dispatch(_ target: String, object: JSONObject, body: [UInt8], endpoint: InferenceEndpoint, context: RequestContext,
                  writer: any ResponseSink, fallback: Fallback? = nil) {
        var context = context
        let settings = context.settings ?? self.settings
        if let (entry, inference) = localModel(named: target) {
            context.route = "local"
            return serveLocally(object, entry: entry, inference: inference, endpoint: endpoint, context: context, writer: writer,
                                fallback: fallback)
        }
        guard let route = settings.router.route(forModel: target) else {
            // A policy's target can vanish with a reload; without a policy the name is simply unknown.
            if let fallback, fallback.handOver("unavailable") { return }
            let error: OpenAIError = context.decision == nil ? .modelNotFound(target)
                : .upstreamUnavailable("The target '\(target)' of the traffic policy for '\(context.modelRequested ?? target)' is not available.")
            return ledger.reject(context, error, writer: writer)
        }
        context.route = route.name

        var upstreamBody = body
        let sent = route.upstreamModel ?? target
        if sent != object["model"]?.stringValue {
            var renamed = object
            renamed["model"] = .string(sent)
            upstreamBody = JSON.object(renamed).serialized()
        }
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        headers.append(("Accept", context.stream ? "text/event-stream" : "application/json"))
        let upstreamRequest = UpstreamRequest(method: "POST", path: endpoint.upstreamPath, headers: headers, body: upstreamBody,
                                              endpoints: route.endpoints, timeouts: route.timeouts, retry: route.retry)
        let exchange = ProxyExchange(ledger: ledger, writer: writer, context: context,
                                     maxResponseBytes: settings.configuration.server.maxResponseBytes, fallback: fallback)
        exchange.start(upstreamRequest, client: upstreams.client(for: writer.eventLoop))
    }

    /// The endpoint's required fields, checked here so a bad request never costs an upstream call.
    static func validate(_ object: JSONObject, for endpoint: InferenceEndpoint) -> OpenAIError? {
        switch endpoint {
        case .chatCompletions:
            guard let messages = object["messages"]?.arrayValue else {
                return .invalidRequest("Missing required parameter: 'messages'.", param: "messages", code: "missing_required_parameter")
            }
            guard !messages.isEmpty else {
                return .invalidRequest("'messages' must contain at least one message.", param: "messages")
            }
            for (i, m) in messages.enumerated() {
                guard case .object(let message) = m, message["role"]?.stringValue != nil else {
                    return .invalidRequest("messages[\(i)] must be an object with a 'role'.", param: "messages[\(i)]")
                }
            }
        case .completions:
            guard object["prompt"] != nil else {
                return .invalidRequest("Missing required parameter: 'prompt'.", param: "prompt", code: "missing_required_parameter")
            }
        case .embeddings:
            guard object["input"] != nil else {
                return .invalidRequest("Missing required parameter: 'input'.", param: "input", code: "missing_required_parameter")
            }
        }
        return nil
    }

    /// The request's episode: `x-flywheel-episode` (refused when not a sane id), else `metadata.episode_id`
    /// when it is one (metadata is the app's own, so an id of another form is left alone).
    static func episode(_ headers: HTTPHeaders, _ object: JSONObject) throws(OpenAIError) -> String? {
        if let header = headers["x-flywheel-episode"] {
            guard RequestID.isSane(header) else {
                throw .invalidRequest("x-flywheel-episode must be 1 to 128 characters of A-Za-z0-9._:-.", param: "x-flywheel-episode")
            }
            return header
        }
        if let id = object["metadata"]?["episode_id"]?.stringValue, RequestID.isSane(id) { return id }
        return nil
    }

    /// Feedback the request itself implies about an earlier one: `x-flywheel-regenerates: ID` rejects ID's
    /// answer; `x-flywheel-edits: ID` says the last assistant message of these messages is the user's edit of
    /// ID's answer, stored as its correction. Keyed by this request's id, so a resent request adds nothing.
    static func implicitFeedback(_ headers: HTTPHeaders, _ object: JSONObject, endpoint: InferenceEndpoint,
                                 requestID: String) throws(OpenAIError) -> [FeedbackRecord] {
        var out: [FeedbackRecord] = []
        let now = WallClock.unixMillis()
        if let target = headers["x-flywheel-regenerates"] {
            guard RequestID.isStoredID(target) else {
                throw .invalidRequest("x-flywheel-regenerates must be the request id of an earlier request.", param: "x-flywheel-regenerates")
            }
            var record = FeedbackRecord(requestID: target, createdAtMillis: now, signal: .rejected)
            record.source = "implicit:regenerate"
            record.comment = "regenerated by \(requestID)"
            record.idempotencyKey = "implicit:regenerate:\(requestID)"
            out.append(record)
        }
        if let target = headers["x-flywheel-edits"] {
            guard RequestID.isStoredID(target) else {
                throw .invalidRequest("x-flywheel-edits must be the request id of an earlier request.", param: "x-flywheel-edits")
            }
            guard endpoint == .chatCompletions,
                  let edited = object["messages"]?.arrayValue?.last(where: { $0["role"]?.stringValue == "assistant" }),
                  let text = edited["content"].flatMap(Self.demonstrationText), !text.isEmpty else {
                throw .invalidRequest("x-flywheel-edits needs the edited answer as an assistant message with text content in 'messages'.",
                                      param: "x-flywheel-edits")
            }
            var record = FeedbackRecord(requestID: target, createdAtMillis: now, signal: .edited)
            record.correction = text
            record.source = "implicit:edit"
            record.comment = "edited in \(requestID)"
            record.idempotencyKey = "implicit:edit:\(requestID)"
            out.append(record)
        }
        return out
    }

    /// Stores implied feedback once its target is logged; nobody waits for the answer (an unknown target is
    /// dropped: the header named a request this log never saw).
    func submitImplicitFeedback(_ feedback: FeedbackRecord) {
        let log = ledger.log
        let submit: @Sendable () -> Void = { log.submitFeedback(feedback) { _ in } }
        if ledger.inFlight.whenLogged(feedback.requestID, submit) == .notInFlight { submit() }
    }

    static func parseTags(_ header: String?) -> [String] {
        guard let header else { return [] }
        var tags: [String] = []
        for part in header.split(separator: ",") {
            let tag = part.trimmingCharacters(in: " \t")
            guard !tag.isEmpty else { continue }
            tags.append(String(tag.prefix(maxTagLength)))
            if tags.count == maxTags { break }
        }
        return tags
    }
}
