import Dispatch
import FlywheelHTTP
import FlywheelSockets
import FlywheelJSON
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
        return context
    }

    /// `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`: checks the body, then hands the
    /// request to a local model or an upstream route. Every path ends in the ledger exactly once.
    func serveInference(_ request: GatewayRequest, endpoint: InferenceEndpoint) {
        let context = requestContext(request, endpoint: endpoint.rawValue)
        ledger.begin(context)
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

        if let entry = localModels[model] {
            context.route = "local"
            return serveLocally(object, entry: entry, endpoint: endpoint, context: context, writer: writer)
        }
        guard let route = router.route(forModel: model) else {
            return ledger.reject(context, .modelNotFound(model), writer: writer)
        }
        context.route = route.name

        var upstreamBody = request.http.body
        if let rename = route.upstreamModel, rename != model {
            object["model"] = .string(rename)
            upstreamBody = JSON.object(object).serialized()
        }
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        headers.append(("Accept", context.stream ? "text/event-stream" : "application/json"))
        let upstreamRequest = UpstreamRequest(method: "POST", path: endpoint.upstreamPath, headers: headers, body: upstreamBody,
                                              endpoints: route.endpoints, timeouts: route.timeouts, retry: route.retry)
        let exchange = ProxyExchange(ledger: ledger, writer: writer, context: context,
                                     maxResponseBytes: configuration.server.maxResponseBytes)
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
