/// One upstream OpenAI-compatible API. A plain value: built by any thread, read on the client driver's loop thread.
public struct UpstreamEndpoint: Sendable {
    /// Short name for logs, metrics and errors, e.g. "openai" or "vllm-a".
    public var name: String
    /// Base URL such as "https://api.openai.com/v1"; a trailing slash is tolerated.
    public var baseURL: String
    /// Sent as `Authorization: Bearer <key>`. Never logged, never part of an error or a description.
    public var apiKey: String?
    /// Extra headers sent with every request to this endpoint (e.g. `OpenAI-Organization`).
    public var headers: [(String, String)]

    public init(name: String, baseURL: String, apiKey: String? = nil, headers: [(String, String)] = []) {
        self.name = name
        self.baseURL = baseURL
        self.apiKey = apiKey
        self.headers = headers
    }
}

extension UpstreamEndpoint: CustomStringConvertible {
    /// Name and base URL only: the API key and header values stay out of logs.
    public var description: String {
        "UpstreamEndpoint(\(name), \(baseURL), apiKey: \(apiKey == nil ? "none" : "<redacted>"))"
    }
}
