import FlywheelHTTP
import FlywheelStore

/// What the log needs to know about a request before it is answered. Built on the event loop as the
/// request is read and checked; a value, handed to the exchange and from it to the ledger.
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
    var episodeID: String?
    /// What the log may keep of this request (`x-flywheel-log`).
    var logMode: LogMode = .full
    /// What a traffic policy decided, when one applies to the requested model.
    var decision: PolicyDecision?
    /// For a shadow run: the request it shadows. Shadow runs are logged but kept out of the request metrics.
    var shadowOf: String?
    /// The gateway's settings when the request arrived (routes, prices, limits); nil: the ones in force.
    var settings: GatewaySettings?
    /// The client's response writer when the server keeps an access log: the ledger notes model and route there.
    var accessLog: HTTPResponseWriter?
    /// Called once the ledger has written the request's end (a shadow run frees its place with it).
    var onFinish: (@Sendable () -> Void)?

    /// `error` as the client's response: OpenAI's shape, the request id, and what a traffic policy decided.
    func errorResponse(_ error: OpenAIError) -> HTTPResponse {
        var response = error.response(requestID: requestID)
        for (name, value) in decision?.headers ?? [] { response.headers.add(name, value) }
        return response
    }

    /// The log row's request-side columns.
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
        r.episodeID = episodeID
        r.variant = decision?.target
        r.decisionJSON = decision?.json.serializedString()
        r.shadowOf = shadowOf
        r.contentWithheld = logMode != .full
        return r
    }
}
