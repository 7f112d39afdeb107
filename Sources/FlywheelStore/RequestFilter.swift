/// Which requests the reader returns. Unset fields do not filter; set fields are combined with AND.
public struct RequestFilter: Sendable {
    /// Matches `modelRequested` or `modelServed`.
    public var model: String?
    public var route: String?
    /// Only failures: status >= 400 or an error type recorded.
    public var errorsOnly: Bool

    public init(model: String? = nil, route: String? = nil, errorsOnly: Bool = false) {
        self.model = model
        self.route = route
        self.errorsOnly = errorsOnly
    }
}
