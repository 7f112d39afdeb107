/// Which requests a query returns. Unset fields do not filter; set fields are combined with AND.
public struct RequestFilter: Sendable, Equatable {
    /// Matches `modelRequested` or `modelServed`.
    public var model: String?
    public var route: String?
    /// Matches requests whose `tags` contain this tag exactly.
    public var tag: String?
    /// Leaves out requests carrying any of these tags (e.g. an evaluation's own requests, tagged `eval`).
    public var excludedTags: [String] = []
    /// Matches this HTTP status exactly.
    public var status: Int?
    /// Only failures: status >= 400 or an error type recorded.
    public var errorsOnly: Bool
    /// Only requests created at or after this time (Unix milliseconds).
    public var createdFrom: Int64?
    /// Only requests created before this time (Unix milliseconds; exclusive).
    public var createdBefore: Int64?
    /// Only the requests of this episode.
    public var episode: String?
    /// Only the requests a policy sent to this target.
    public var variant: String?
    /// Only shadow runs (true), only requests clients sent (false), or both (nil).
    public var shadows: Bool?
    /// Only the requests made with this client key (a configured key's id or a virtual key's id).
    public var clientKey: String?

    /// The tags `flywheel eval` puts on its own requests and on its judge's (`eval:<run>` comes with `eval`).
    /// Those requests replay a golden set: they are not traffic, so exports and drift checks leave them out.
    public static let evaluationTags = ["eval", "eval-judge"]

    public init(model: String? = nil, route: String? = nil, tag: String? = nil, status: Int? = nil,
                errorsOnly: Bool = false, createdFrom: Int64? = nil, createdBefore: Int64? = nil) {
        self.model = model
        self.route = route
        self.tag = tag
        self.status = status
        self.errorsOnly = errorsOnly
        self.createdFrom = createdFrom
        self.createdBefore = createdBefore
    }
}
