/// A complete response for `HTTPResponseWriter.send`. Value type; any thread.
/// `Content-Length`, `Transfer-Encoding`, `Connection` and `Date` are managed by the server
/// (a `Connection: close` here makes the server close after sending; a `Date` here is kept).
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders = HTTPHeaders(), body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}
