import FlywheelJSON

/// A response as `TestHTTPClient` read it (the body de-chunked).
public struct TestHTTPResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// The body arrived with `Transfer-Encoding: chunked`.
    public var isChunked: Bool

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as JSON; nil when it is not JSON.
    public var json: JSON? { try? JSONParser.parse(body) }
}

public struct TestHTTPClientError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
