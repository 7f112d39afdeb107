/// One page of requests from `LogQueries.requestPage(_:)`.
public struct RequestPage: Sendable {
    public var requests: [RequestWithFeedback]
    /// The cursor for the next page; nil when this page was not full (nothing more matched).
    public var next: RequestCursor?

    public init(requests: [RequestWithFeedback], next: RequestCursor?) {
        self.requests = requests
        self.next = next
    }
}
