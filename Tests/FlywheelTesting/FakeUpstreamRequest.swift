import FlywheelJSON

/// One request as a fake upstream received it.
public struct FakeUpstreamRequest: Sendable {
    public var method: String
    /// The request target, e.g. "/v1/chat/completions".
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }

    /// The body parsed as JSON; nil when it is not JSON.
    public var json: JSON? { try? JSONParser.parse(body) }
}
