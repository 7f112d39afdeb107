/// Where a page of requests ended: the sort key of its last row. The next page starts strictly after it
/// (keyset paging), so rows with equal timestamps are neither repeated nor skipped, and rows added
/// meanwhile elsewhere in the order do not shift the pages.
public struct RequestCursor: Sendable, Hashable {
    public var createdAtMillis: Int64
    public var id: String

    public init(createdAtMillis: Int64, id: String) {
        self.createdAtMillis = createdAtMillis
        self.id = id
    }
}
