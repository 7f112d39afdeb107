import FlywheelHTTP
import FlywheelJSON
import FlywheelSockets
import FlywheelStore
import FlywheelUpstream
#if canImport(Glibc)
import Glibc
#endif

/// What the log needs to know about a request before the upstream answers.
struct RequestContext: Sendable {
    var requestID: String
    var endpoint: String
    var method: String
    var receivedAtNanos: UInt64
    var createdAtMillis: Int64
    var requestText: String
    var modelRequested: String?
    var route: String?
    var stream = false
    var tags: [String] = []
    var user: String?
    var metadataJSON: String?
    var clientKeyID: String?

    func record(status: Int, latencyMillis: Double) -> RequestRecord {
        var r = RequestRecord(id: requestID, createdAtMillis: createdAtMillis, method: method, endpoint: endpoint,
                              requestJSON: requestText, status: status, latencyMillis: latencyMillis)
        r.modelRequested = modelRequested
        r.route = route
        r.stream = stream
        r.tags = tags
        r.user = user
        r.metadataJSON = metadataJSON
        r.clientKeyID = clientKeyID
        return r
    }
}

extension RequestRecord {
    /// Records `error` in the log's error columns: its code (more specific) or else its type, and its message.
    mutating func setError(_ error: OpenAIError) {
        errorType = error.code ?? error.type
        errorMessage = error.message
    }
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

    func proxy(_ request: HTTPRequest, endpoint: ProxiedEndpoint, requestID: String, writer: HTTPResponseWriter) {
        metrics.requestStarted()
        var context = RequestContext(
            requestID: requestID, endpoint: endpoint.rawValue, method: request.method,
            receivedAtNanos: request.receivedAtNanos == 0 ? MonotonicClock.now() : request.receivedAtNanos,
            createdAtMillis: WallClock.unixMillis(),
            requestText: String(decoding: request.body, as: UTF8.self))
        context.tags = Self.parseTags(request.headers["x-flywheel-tags"])

        switch authenticator.authenticate(request.headers) {
        case .rejected: return fail(context, .invalidAPIKey(), writer: writer)
        case .authenticated(let id): context.clientKeyID = id
        case .open: break
        }

        let body: JSON
        do {
            body = try JSONParser.parse(request.body)
        } catch {
            let message = request.body.isEmpty
                ? "The request body is empty; expected a JSON object."
                : "We could not parse the JSON body of your request (\(error)). Send valid JSON."
            return fail(context, .invalidRequest(message), writer: writer)
        }
        guard case .object(var object) = body else {
            return fail(context, .invalidRequest("The request body must be a JSON object."), writer: writer)
        }
        context.user = object["user"]?.stringValue
        if let metadata = object["metadata"], case .object = metadata { context.metadataJSON = metadata.serializedString() }

        guard let model = object["model"]?.stringValue, !model.isEmpty else {
            return fail(context, .invalidRequest("You must provide a model parameter.", param: "model"), writer: writer)
        }
        context.modelRequested = model
        if let problem = Self.validate(object, for: endpoint) {
            return fail(context, problem, writer: writer)
        }
        if let s = object["stream"], s != .null, s.boolValue == nil {
            return fail(context, .invalidRequest("'stream' must be a boolean.", param: "stream"), writer: writer)
        }
        context.stream = endpoint != .embeddings && object["stream"]?.boolValue == true

        if let entry = localModels[model] {
            context.route = "local"
            return serveLocally(object, entry: entry, endpoint: endpoint, context: context, writer: writer)
        }
        guard let route = router.route(forModel: model) else {
            return fail(context, .modelNotFound(model), writer: writer)
        }
        context.route = route.name

        var upstreamBody = request.body
        if let rename = route.upstreamModel, rename != model {
            object["model"] = .string(rename)
            upstreamBody = JSON.object(object).serialized()
        }
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        headers.append(("Accept", context.stream ? "text/event-stream" : "application/json"))
        let upstreamRequest = UpstreamRequest(method: "POST", path: endpoint.upstreamPath, headers: headers, body: upstreamBody,
                                              endpoints: route.endpoints, timeouts: route.timeouts, retry: route.retry)
        let exchange = ProxyExchange(gateway: self, writer: writer, requestID: requestID, context: context, stream: context.stream)
        exchange.start(upstreamRequest)
    }

    /// The endpoint's required fields, checked here so a bad request never costs an upstream call.
    static func validate(_ object: JSONObject, for endpoint: ProxiedEndpoint) -> OpenAIError? {
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

    /// Answers a request that never reached an upstream, and logs it with its error.
    func fail(_ context: RequestContext, _ error: OpenAIError, writer: HTTPResponseWriter) {
        writer.send(error.response(requestID: context.requestID))
        let seconds = Double(MonotonicClock.now() &- context.receivedAtNanos) / 1e9
        var record = context.record(status: error.status, latencyMillis: seconds * 1000)
        record.setError(error)
        log.enqueue(record)
        metrics.requestFinished(endpoint: context.endpoint, model: nil, route: context.route, status: error.status,
                                seconds: seconds, overheadSeconds: seconds, firstByteSeconds: nil)
    }
}
