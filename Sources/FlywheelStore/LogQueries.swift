/// Reading the log: the operator CLI's listings (`flywheel tail`, `show`) and the paged, filtered and
/// streaming queries that export, evaluation and the dashboard build on. The SQLite implementation is
/// `SQLiteLogReader`.
///
/// Row ids (`StoredRequest.rowID`, `StoredFeedback.rowID`) are the insert sequence: they only grow, so
/// "everything after row n" follows the log as it is written.
///
/// Thread rule: an instance is used by one thread at a time (implementations need not be `Sendable`).
public protocol LogQueries: AnyObject {
    /// The newest `limit` requests matching `filter`, returned oldest first (ready to print as a tail).
    func latestRequests(limit: Int, filter: RequestFilter) throws(StoreError) -> [StoredRequest]

    /// Requests with row id greater than `afterRowID` matching `filter`, ascending, at most `limit`.
    /// For follow mode: remember the last row id returned and ask again.
    func requests(afterRowID: Int64, filter: RequestFilter, limit: Int) throws(StoreError) -> [StoredRequest]

    /// The request with exactly this id (a resent id's later copies are `id#2`, `id#3`, ...), or nil.
    func request(id: String) throws(StoreError) -> RequestRecord?

    /// All feedback on request `id`, oldest first.
    func feedback(forRequest id: String) throws(StoreError) -> [FeedbackRecord]

    /// The newest `limit` feedback rows, oldest first.
    func latestFeedback(limit: Int) throws(StoreError) -> [StoredFeedback]

    /// Feedback rows with row id greater than `afterRowID`, ascending, at most `limit`.
    func feedback(afterRowID: Int64, limit: Int) throws(StoreError) -> [StoredFeedback]

    /// The highest request row id (0 for an empty log). Start follow mode from here.
    func maxRequestRowID() throws(StoreError) -> Int64

    /// The highest feedback row id (0 when there is none).
    func maxFeedbackRowID() throws(StoreError) -> Int64

    /// How many requests match `filter`.
    func requestCount(filter: RequestFilter) throws(StoreError) -> Int

    /// One page of requests matching `query.filter` in `query.order`, starting after `query.after`, with
    /// their feedback when `query.includeFeedback`. Keyset paging on (created_at, id): walking `next` from
    /// page to page visits every matching row exactly once, however many share a timestamp.
    func requestPage(_ query: RequestQuery) throws(StoreError) -> RequestPage
}

extension LogQueries {
    /// How many requests there are.
    public func requestCount() throws(StoreError) -> Int {
        try requestCount(filter: RequestFilter())
    }

    /// Calls `body` with every page of requests matching `query`, from `query.after` on, each of at most
    /// `query.limit` rows, until a page comes back short. Memory stays at one page whatever the size of
    /// the log, and no read transaction stays open between pages (each page is its own query), so a long
    /// walk does not hold back the writer's WAL checkpoints. Rows written during the walk are included
    /// when they sort after the current position. To stop early, throw from `body`.
    public func forEachPage(_ query: RequestQuery, _ body: ([RequestWithFeedback]) throws -> Void) throws {
        precondition(query.limit > 0, "a page holds at least one row")
        var query = query
        while true {
            let page = try requestPage(query)
            if !page.requests.isEmpty { try body(page.requests) }
            guard let next = page.next else { return }
            query.after = next
        }
    }

    /// `forEachPage(_:_:)`, one request at a time.
    public func forEachRequest(_ query: RequestQuery, _ body: (RequestWithFeedback) throws -> Void) throws {
        try forEachPage(query) { page in
            for request in page { try body(request) }
        }
    }
}
