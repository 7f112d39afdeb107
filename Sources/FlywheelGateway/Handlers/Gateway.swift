import FlywheelConfig
import FlywheelEngine
import FlywheelHTTP
import FlywheelJSON
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// The OpenAI-compatible front door: dispatches each HTTP request to its handler. Runs on the HTTP event-loop
/// threads and never blocks them: upstream work goes to the `UpstreamClient` thread, log rows to the
/// `LogWriter` thread, and answers come back through the `HTTPResponseWriter`.
public final class Gateway: HTTPResponder {
    let configuration: GatewayConfiguration
    let router: Router
    let upstreams: UpstreamPool
    let log: LogWriter
    public let metrics: GatewayMetrics
    let authenticator: APIKeyAuthenticator
    let signature: WebhookSignature?
    let prices: PriceTable
    /// Models served in process, by request name; they take precedence over routes.
    let localModels: [String: LocalModelEntry]
    /// Runs local generations; nil when no local model is configured.
    let inference: InferenceScheduler?
    /// Reads the HTTP server's open-connection count for `/metrics`; set once the server exists.
    let connectionCounter = Mutex<(@Sendable () -> Int)?>(nil)

    public init(configuration: GatewayConfiguration, upstreams: UpstreamPool, log: LogWriter, metrics: GatewayMetrics = GatewayMetrics(),
                localModels: [LocalModelEntry] = [], inference: InferenceScheduler? = nil) {
        self.configuration = configuration
        self.router = Router(configuration: configuration)
        self.upstreams = upstreams
        self.log = log
        self.metrics = metrics
        self.authenticator = APIKeyAuthenticator(keys: configuration.auth.keys)
        self.signature = configuration.feedback.webhookSecret.map(WebhookSignature.init(secret:))
        self.prices = PriceTable(configuration.prices)
        self.localModels = Dictionary(localModels.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        self.inference = inference
    }

    /// Where `/metrics` reads the number of open client connections.
    public func setConnectionCounter(_ counter: @escaping @Sendable () -> Int) {
        connectionCounter.withLock { $0 = counter }
    }

    /// The OpenAI endpoints this gateway proxies, with the upstream path each maps to.
    enum ProxiedEndpoint: String, Sendable {
        case chatCompletions = "/v1/chat/completions"
        case completions = "/v1/completions"
        case embeddings = "/v1/embeddings"

        var upstreamPath: String { String(rawValue.dropFirst(3)) }  // drop "/v1"
    }

    public func respond(to request: HTTPRequest, writer: HTTPResponseWriter) {
        let requestID = RequestID.resolve(clientValue: request.headers["x-request-id"])
        let path = Self.normalized(request.path)
        if let endpoint = ProxiedEndpoint(rawValue: path) {
            guard request.method == "POST" else {
                return writer.send(methodNotAllowed(request, allow: "POST", requestID: requestID))
            }
            return proxy(request, endpoint: endpoint, requestID: requestID, writer: writer)
        }
        switch path {
        case "/v1/feedback":
            guard request.method == "POST" else { return writer.send(methodNotAllowed(request, allow: "POST", requestID: requestID)) }
            submitFeedback(request, requestID: requestID, writer: writer)
        case "/v1/models":
            guard request.method == "GET" else { return writer.send(methodNotAllowed(request, allow: "GET", requestID: requestID)) }
            listModels(request, requestID: requestID, writer: writer)
        case "/healthz", "/health":
            guard request.method == "GET" || request.method == "HEAD" else { return writer.send(methodNotAllowed(request, allow: "GET", requestID: requestID)) }
            writer.send(HTTPResponse.json(["status": "ok"], requestID: requestID))
        case "/metrics":
            guard request.method == "GET" else { return writer.send(methodNotAllowed(request, allow: "GET", requestID: requestID)) }
            writer.send(metricsResponse(requestID: requestID))
        default:
            writer.send(OpenAIError.notFound(path: request.path).response(requestID: requestID))
        }
    }

    /// Tolerates one trailing slash, as clients that join base URLs carelessly send it.
    static func normalized(_ path: String) -> String {
        path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
    }

    func methodNotAllowed(_ request: HTTPRequest, allow: String, requestID: String) -> HTTPResponse {
        var response = OpenAIError.methodNotAllowed(request.method, path: request.path).response(requestID: requestID)
        response.headers.add("Allow", allow)
        return response
    }

    func metricsResponse(requestID: String) -> HTTPResponse {
        let connections = connectionCounter.withLock { $0 }?() ?? 0
        var gauges = GatewayMetrics.Gauges(logQueueDepth: log.queueDepth, logDropped: log.droppedCount,
                                           logWritten: log.writtenCount, logWriteErrors: log.writeErrorCount,
                                           openConnections: connections)
        if let inference {
            let counts = inference.counts
            gauges.localActive = counts.active
            gauges.localQueued = counts.queued
            gauges.localPromptTokens = counts.promptTokens
            gauges.localGeneratedTokens = counts.generatedTokens
        }
        let text = metrics.render(gauges)
        var headers = HTTPHeaders()
        headers.add("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        headers.add("x-request-id", requestID)
        return HTTPResponse(status: 200, headers: headers, body: Array(text.utf8))
    }

    func listModels(_ request: HTTPRequest, requestID: String, writer: HTTPResponseWriter) {
        if case .rejected = authenticator.authenticate(request.headers) {
            return writer.send(OpenAIError.invalidAPIKey().response(requestID: requestID))
        }
        let names = localModels.keys.sorted() + router.exactModelNames
        if names.isEmpty, let route = router.catchAll {
            // Everything goes to one upstream: it knows its models better than we do.
            let exchange = ProxyExchange(gateway: self, writer: writer, requestID: requestID, context: nil, stream: false)
            let upstreamRequest = UpstreamRequest(method: "GET", path: "/models", headers: [("Accept", "application/json")],
                                                  endpoints: route.endpoints, timeouts: route.timeouts, retry: route.retry)
            exchange.start(upstreamRequest)
            return
        }
        var seen = Set<String>()
        let data: [JSON] = names.filter { seen.insert($0).inserted }.map {
            ["id": .string($0), "object": "model", "created": 0, "owned_by": localModels[$0] == nil ? "flywheel" : "flywheel-local"]
        }
        writer.send(HTTPResponse.json(["object": "list", "data": .array(data)], requestID: requestID))
    }
}
