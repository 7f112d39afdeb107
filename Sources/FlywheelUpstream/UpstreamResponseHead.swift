/// Status line and headers of the response that was committed to the handler (the final one, after retries).
public struct UpstreamResponseHead: Sendable {
    public var status: Int
    /// The final response's headers, names as the upstream sent them, in order.
    public var headers: [(String, String)]
    /// Name of the endpoint that answered.
    public var endpoint: String
    /// Total attempts made across all endpoints (1 = no retry).
    public var attempts: Int

    public init(status: Int, headers: [(String, String)], endpoint: String, attempts: Int) {
        self.status = status
        self.headers = headers
        self.endpoint = endpoint
        self.attempts = attempts
    }

    /// First header value whose name matches `name` case-insensitively.
    public func value(for name: String) -> String? {
        for (key, value) in headers where key.utf8.count == name.utf8.count
            && zip(key.utf8, name.utf8).allSatisfy({ Self.asciiLower($0) == Self.asciiLower($1) }) {
            return value
        }
        return nil
    }

    private static func asciiLower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }
}
