/// One request as logged: what arrived, how it was routed, what was answered, and what it cost.
/// A plain value; build it on any thread and hand it to `LogSink.enqueue(_:)`.
public struct RequestRecord: Sendable, Equatable {
    /// `x-request-id` (UUIDv7 or client-supplied). Unique in the log: a resent id is stored as `id#2`, `id#3`, ...
    public var id: String
    /// Unix milliseconds when the request arrived.
    public var createdAtMillis: Int64
    /// HTTP method, e.g. "POST".
    public var method: String
    /// Path, e.g. "/v1/chat/completions".
    public var endpoint: String
    /// Which Flywheel API key was used, when keys exist.
    public var clientKeyID: String?
    /// From the `x-flywheel-tags` header. Stored as a JSON array.
    public var tags: [String]
    /// Body "user".
    public var user: String?
    /// Body "metadata" object as JSON text.
    public var metadataJSON: String?
    public var modelRequested: String?
    /// "model" from the response.
    public var modelServed: String?
    /// Route name that handled it: "upstream", "local" or a custom name.
    public var route: String?
    /// Endpoint name that answered.
    public var upstream: String?
    public var stream: Bool
    /// HTTP status sent to the client.
    public var status: Int
    /// OpenAI error type/code when failed.
    public var errorType: String?
    public var errorMessage: String?
    /// Full request body.
    public var requestJSON: String
    /// Full response (streams assembled into one JSON object), unless `responseTruncated`.
    public var responseJSON: String?
    /// The logged `responseJSON` was cut at the log's size cap; the client received the whole response.
    public var responseTruncated: Bool
    /// The response ended before it was complete (the client disconnected or the server shut down);
    /// `responseJSON` holds what was produced until then.
    public var incomplete: Bool
    /// Total time in the gateway.
    public var latencyMillis: Double
    public var timeToFirstTokenMillis: Double?
    /// Time spent waiting on the upstream.
    public var upstreamMillis: Double?
    public var promptTokens: Int?
    public var completionTokens: Int?
    public var totalTokens: Int?
    public var costUSD: Double?
    /// Upstream attempts (retries/fallbacks); 0 when none.
    public var attempts: Int
    /// The episode (conversation or task) this request belongs to, from `x-flywheel-episode` or
    /// `metadata.episode_id`.
    public var episodeID: String?
    /// The target a traffic policy chose for this request (nil when no policy applied).
    public var variant: String?
    /// Why: the policy's decision as JSON text (`policy`, `reason`, `sticky`, `bucket`, `tried`).
    public var decisionJSON: String?
    /// For a shadow run (the same request run on a policy's shadow target, never returned): the id of the
    /// request it shadowed.
    public var shadowOf: String?
    /// The client asked for metadata only (`x-flywheel-log: metadata`): `requestJSON` is empty and the
    /// response and error text were never stored.
    public var contentWithheld: Bool

    /// Everything not given is nil, empty, false or 0.
    public init(id: String, createdAtMillis: Int64, method: String, endpoint: String,
                requestJSON: String, status: Int, latencyMillis: Double) {
        self.id = id
        self.createdAtMillis = createdAtMillis
        self.method = method
        self.endpoint = endpoint
        self.clientKeyID = nil
        self.tags = []
        self.user = nil
        self.metadataJSON = nil
        self.modelRequested = nil
        self.modelServed = nil
        self.route = nil
        self.upstream = nil
        self.stream = false
        self.status = status
        self.errorType = nil
        self.errorMessage = nil
        self.requestJSON = requestJSON
        self.responseJSON = nil
        self.responseTruncated = false
        self.incomplete = false
        self.latencyMillis = latencyMillis
        self.timeToFirstTokenMillis = nil
        self.upstreamMillis = nil
        self.promptTokens = nil
        self.completionTokens = nil
        self.totalTokens = nil
        self.costUSD = nil
        self.attempts = 0
        self.episodeID = nil
        self.variant = nil
        self.decisionJSON = nil
        self.shadowOf = nil
        self.contentWithheld = false
    }
}
