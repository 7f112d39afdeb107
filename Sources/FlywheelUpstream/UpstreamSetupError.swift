/// Thrown by `UpstreamClient.init` when libcurl cannot be set up.
public struct UpstreamSetupError: Error, Sendable, CustomStringConvertible {
    /// The call that failed, e.g. "curl_global_init" or "curl_multi_init".
    public var call: String
    public var message: String

    public var description: String { "upstream client setup: \(call) failed: \(message)" }
}
