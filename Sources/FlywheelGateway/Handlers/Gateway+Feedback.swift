import FlywheelHTTP
import FlywheelJSON
import FlywheelStore

extension Gateway {
    static let maxIdempotencyKeyLength = 255
    static let maxSourceLength = 128
    static let maxCommentBytes = 64 << 10

    /// `POST /v1/feedback`: validates, then answers only once the row is committed.
    func submitFeedback(_ request: HTTPRequest, requestID: String, writer: HTTPResponseWriter) {
        let respondError: @Sendable (OpenAIError) -> Void = { error in writer.send(error.response(requestID: requestID)) }
        guard request.body.count <= configuration.feedback.maxBodyBytes else {
            return respondError(OpenAIError(status: 413, message: "Feedback bodies are limited to \(configuration.feedback.maxBodyBytes) bytes.",
                                            type: "invalid_request_error", code: "request_too_large"))
        }
        if let signature {
            // Webhooks prove themselves by signing the exact bytes they sent.
            guard signature.verify(header: request.headers["x-flywheel-signature"], body: request.body) else {
                return respondError(OpenAIError(status: 401, message: "Missing or invalid x-flywheel-signature: expected sha256=<hex HMAC-SHA256 of the raw body>.",
                                                type: "invalid_request_error", code: "invalid_signature"))
            }
        } else if case .rejected = authenticator.authenticate(request.headers) {
            return respondError(.invalidAPIKey())
        }
        let feedback: FeedbackRecord
        switch Self.parseFeedback(request.body, idempotencyKey: request.headers["Idempotency-Key"]) {
        case .failure(let error): return respondError(error)
        case .success(let f): feedback = f
        }
        log.submitFeedback(feedback) { result in
            switch result {
            case .success(let submission):
                writer.send(HTTPResponse.json(["id": .int(submission.feedbackID), "object": "feedback",
                                               "request_id": .string(feedback.requestID), "duplicate": .bool(submission.duplicate)],
                                              requestID: requestID))
            case .failure(.unknownRequest(let id)):
                respondError(OpenAIError(status: 404, message: "No logged request has the id '\(id)'.",
                                         type: "invalid_request_error", param: "request_id", code: "request_not_found"))
            case .failure(.idempotencyConflict(let message)):
                respondError(OpenAIError(status: 409, message: "Idempotency-Key reused for different feedback: \(message)",
                                         type: "invalid_request_error", code: "idempotency_conflict"))
            case .failure(.overloaded), .failure(.closed):
                respondError(.overloaded("The feedback log is busy or closing; retry shortly."))
            case .failure:
                respondError(.serverError("The feedback could not be stored."))
            }
        }
    }

    /// Validates a feedback body into a record; every rejection says which field and why.
    static func parseFeedback(_ body: [UInt8], idempotencyKey: String?) -> Result<FeedbackRecord, OpenAIError> {
        let json: JSON
        do { json = try JSONParser.parse(body) } catch {
            return .failure(.invalidRequest("We could not parse the JSON body of your request (\(error))."))
        }
        guard case .object(let o) = json else { return .failure(.invalidRequest("The feedback body must be a JSON object.")) }
        guard let requestID = o["request_id"]?.stringValue, !requestID.isEmpty else {
            return .failure(.invalidRequest("Missing required parameter: 'request_id' (a string).", param: "request_id", code: "missing_required_parameter"))
        }
        guard RequestID.isSane(requestID) else {
            return .failure(.invalidRequest("'request_id' is not a valid request id.", param: "request_id"))
        }
        let allowed = FeedbackSignal.allCases.map(\.rawValue).joined(separator: ", ")
        guard let signalText = o["signal"]?.stringValue else {
            return .failure(.invalidRequest("Missing required parameter: 'signal' (one of \(allowed)).", param: "signal", code: "missing_required_parameter"))
        }
        guard let signal = FeedbackSignal(rawValue: signalText) else {
            return .failure(.invalidRequest("'signal' must be one of \(allowed); got '\(signalText)'.", param: "signal"))
        }
        var record = FeedbackRecord(requestID: requestID, createdAtMillis: WallClock.unixMillis(), signal: signal)

        func optionalString(_ key: String, limit: Int) -> Result<String?, OpenAIError> {
            guard let v = o[key], v != .null else { return .success(nil) }
            guard let s = v.stringValue else { return .failure(.invalidRequest("'\(key)' must be a string.", param: key)) }
            guard s.utf8.count <= limit else { return .failure(.invalidRequest("'\(key)' is longer than \(limit) bytes.", param: key)) }
            return .success(s)
        }
        func optionalNumber(_ key: String) -> Result<Double?, OpenAIError> {
            guard let v = o[key], v != .null else { return .success(nil) }
            guard let d = v.doubleValue, d.isFinite else { return .failure(.invalidRequest("'\(key)' must be a number.", param: key)) }
            return .success(d)
        }
        do throws(OpenAIError) {
            record.value = try optionalNumber("value").get()
            record.weight = try optionalNumber("weight").get()
            record.correction = try optionalString("correction", limit: 4 << 20).get()
            record.comment = try optionalString("comment", limit: maxCommentBytes).get()
            record.source = try optionalString("source", limit: maxSourceLength).get()
        } catch {
            return .failure(error)
        }
        if let w = record.weight, w < 0 { return .failure(.invalidRequest("'weight' must not be negative.", param: "weight")) }
        switch signal {
        case .score where record.value == nil:
            return .failure(.invalidRequest("A 'score' signal needs a numeric 'value'.", param: "value"))
        case .edited where record.correction == nil:
            return .failure(.invalidRequest("An 'edited' signal needs the corrected answer in 'correction'.", param: "correction"))
        case .comment where record.comment == nil:
            return .failure(.invalidRequest("A 'comment' signal needs a 'comment'.", param: "comment"))
        default: break
        }
        if let key = idempotencyKey {
            guard !key.isEmpty, key.utf8.count <= maxIdempotencyKeyLength else {
                return .failure(.invalidRequest("Idempotency-Key must be 1 to \(maxIdempotencyKeyLength) bytes."))
            }
            record.idempotencyKey = key
        }
        return .success(record)
    }
}
