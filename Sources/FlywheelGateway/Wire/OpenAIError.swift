import FlywheelHTTP
import FlywheelJSON

/// An error as OpenAI's API reports it: `{"error":{"message","type","param","code"}}` with a matching status,
/// so the official SDKs raise their proper exception classes. This is the only error shape a client ever sees.
public struct OpenAIError: Error, Sendable, Equatable {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    /// Extra response headers (`retry-after` on a 429); never part of the body.
    public var headers: [String: String] = [:]

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var json: JSON {
        ["error": ["message": .string(message), "type": .string(type), "param": .optional(param), "code": .optional(code)]]
    }

    /// The code of a valid request a local model cannot serve (a field or value it does not support, a token
    /// outside its vocabulary): another target may.
    public static let localModelLimit = "unsupported_by_local_model"
    /// Codes of refusals that are about the local model, not the request: a policy's fallback may take them.
    static let localCapabilityCodes: Set<String> = [localModelLimit, "context_length_exceeded", "chat_template_error"]

    /// The error as a JSON HTTP response carrying `requestID`.
    public func response(requestID: String) -> HTTPResponse {
        var response = HTTPResponse.json(json, status: status, requestID: requestID)
        for (name, value) in headers.sorted(by: { $0.key < $1.key }) { response.headers.add(name, value) }
        return response
    }
}

extension HTTPResponse {
    /// A JSON response carrying the request's id, the shape of every answer the gateway writes itself.
    static func json(_ body: JSON, status: Int = 200, requestID: String) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        headers.add("x-request-id", requestID)
        return HTTPResponse(status: status, headers: headers, body: body.serialized())
    }
}

extension OpenAIError {
    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> OpenAIError {
        OpenAIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }
    public static func modelNotFound(_ model: String) -> OpenAIError {
        OpenAIError(status: 404, message: "The model '\(model)' does not exist or is not routed by this gateway.",
                    type: "invalid_request_error", param: "model", code: "model_not_found")
    }
    public static func invalidAPIKey() -> OpenAIError {
        OpenAIError(status: 401, message: "Incorrect or missing API key. Send it as 'Authorization: Bearer <key>'.",
                    type: "invalid_request_error", code: "invalid_api_key")
    }
    public static func adminKeyRequired() -> OpenAIError {
        OpenAIError(status: 401, message: "This endpoint needs the admin key (auth.admin_key): send it as 'Authorization: Bearer <admin key>' or log in at /login.",
                    type: "invalid_request_error", code: "admin_key_required")
    }
    public static func adminOnlyOnLoopback() -> OpenAIError {
        OpenAIError(status: 403, message: "Admin endpoints answer only this machine (a loopback address) while no admin key is configured; set auth.admin_key to use them from elsewhere.",
                    type: "invalid_request_error", code: "admin_key_required")
    }
    public static func modelNotAllowed(_ model: String, keyID: String) -> OpenAIError {
        OpenAIError(status: 403, message: "The API key \(keyID) may not use the model '\(model)'.",
                    type: "invalid_request_error", param: "model", code: "model_not_allowed")
    }
    public static func notFound(path: String) -> OpenAIError {
        OpenAIError(status: 404, message: "Unknown path: \(path)", type: "invalid_request_error", code: "unknown_url")
    }
    public static func methodNotAllowed(_ method: String, path: String) -> OpenAIError {
        OpenAIError(status: 405, message: "Method \(method) is not allowed on \(path)", type: "invalid_request_error", code: "method_not_allowed")
    }
    public static func upstreamUnavailable(_ message: String) -> OpenAIError {
        OpenAIError(status: 502, message: message, type: "upstream_error", code: "upstream_unavailable")
    }
    public static func upstreamTimeout(_ message: String) -> OpenAIError {
        OpenAIError(status: 504, message: message, type: "upstream_error", code: "upstream_timeout")
    }
    public static func serverError(_ message: String = "The gateway failed to handle the request.") -> OpenAIError {
        OpenAIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }
    /// Logged, never sent: the client went away before the answer (nginx's 499).
    public static func clientClosed(_ message: String = "The client disconnected before the response.") -> OpenAIError {
        OpenAIError(status: 499, message: message, type: "client_closed", code: "client_closed_request")
    }
    /// The daemon is stopping: new work is refused, and work cut at the end of the shutdown grace says so.
    public static func serverShutdown(_ message: String = "The gateway is shutting down; retry shortly.") -> OpenAIError {
        OpenAIError(status: 503, message: message, type: "server_error", code: "server_shutdown")
    }
    public static func overloaded(_ message: String) -> OpenAIError {
        OpenAIError(status: 503, message: message, type: "server_error", code: "overloaded")
    }

    /// The error for a protocol-level failure the HTTP layer detected itself (malformed request, limits).
    public static func forHTTPStatus(_ status: Int, message: String) -> OpenAIError {
        let code: String? = switch status {
        case 400: "bad_request"
        case 408: "request_timeout"
        case 413: "request_too_large"
        case 431: "headers_too_large"
        case 501: "not_implemented"
        case 503: "overloaded"
        case 505: "http_version_not_supported"
        default: nil
        }
        let type = status >= 500 ? "server_error" : "invalid_request_error"
        return OpenAIError(status: status, message: message, type: type, code: code)
    }
}
