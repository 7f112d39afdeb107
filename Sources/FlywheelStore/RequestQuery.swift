/// One page of a request listing: which rows, in which order, from where, how many.
public struct RequestQuery: Sendable, Equatable {
    public var filter: RequestFilter
    public var order: LogOrder
    /// Start after this row (`RequestPage.next` of the previous page); nil for the first page.
    public var after: RequestCursor?
    /// Most rows per page.
    public var limit: Int
    /// Attach each request's feedback (`RequestWithFeedback.feedback`); otherwise it is empty.
    public var includeFeedback: Bool

    public init(filter: RequestFilter = RequestFilter(), order: LogOrder = .oldestFirst, after: RequestCursor? = nil,
                limit: Int = 100, includeFeedback: Bool = true) {
        self.filter = filter
        self.order = order
        self.after = after
        self.limit = limit
        self.includeFeedback = includeFeedback
    }
}
