/// A logged request with its row id (monotonic insert order; use it to follow the log).
public struct StoredRequest: Sendable {
    public var rowID: Int64
    public var record: RequestRecord

    public init(rowID: Int64, record: RequestRecord) {
        self.rowID = rowID
        self.record = record
    }
}
