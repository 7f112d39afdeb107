import Dispatch
import FlywheelHTTP
import FlywheelJSON
import FlywheelStore

extension Gateway {
    static let maxIdempotencyKeyLength = 255
    static let maxSourceLength = 128
    static let maxCommentBytes = 64 << 10

    /// `POST /v1/feedback` (after the access step checked the signature or key): validates, waits for the
    /// request's row when that request is still being answered, and answers once the feedback row is
    /// committed, or with 503 and `Retry-After` when that takes longer than `feedback.wait_timeout`.
    func submitFeedback(_ request: GatewayRequest) {
        let writer = request.writer
        let requestID = request.requestID
        if let tooLarge = feedbackTooLarge(request) { return writer.send(tooLarge) }
        switch Self.parseFeedback(request.http.body, idempotencyKey: request.http.headers["Idempotency-Key"]) {
        case .failure(let error): writer.send(error.response(requestID: requestID))
        case .success(let feedback):
            deliverFeedback(feedback, request) { result in Self.feedbackResponse(result, feedback: feedback, requestID: requestID) }
        }
    }

    /// 413 for a feedback body over `feedback.max_body_bytes`, in any shape. The daemon's HTTP server refuses
    /// such bodies from their head already (`bodyLimit`); this holds for a gateway served without that limit.
    func feedbackTooLarge(_ request: GatewayRequest) -> HTTPResponse? {
        let limit = request.settings.configuration.feedback.maxBodyBytes
        guard request.http.body.count > limit else { return nil }
        return OpenAIError(status: 413, message: "Feedback bodies are limited to \(limit) bytes.",
                           type: "invalid_request_error", code: "request_too_large").response(requestID: request.requestID)
    }

    /// The one way feedback reaches the store, whatever shape it came in: waits for a request still being
    /// answered, bounds every wait by `feedback.wait_timeout` (then 503 with `Retry-After`), and answers with
    /// what `respond` makes of the store's verdict.
    func deliverFeedback(_ feedback: FeedbackRecord, _ request: GatewayRequest,
                         respond: @escaping @Sendable (Result<FeedbackSubmission, StoreError>) -> HTTPResponse) {
        let writer = request.writer
        let requestID = request.requestID
        let waitTimeout = request.settings.configuration.feedback.waitTimeout
        let answer = FeedbackAnswer(writer: writer, requestID: requestID, waitTimeout: waitTimeout)
        let log = ledger.log
        // The same deadline for the store: feedback answered 503 is then never written behind the client's back
        // (unless the writer had already started on it; a retry with the same Idempotency-Key is then a duplicate).
        let deadline = DispatchTime.now() + waitTimeout
        let submit: @Sendable () -> Void = {
            log.submitFeedback(feedback, deadline: deadline) { result in answer.send(respond(result)) }
        }
        // Episode feedback covers the requests logged so far; it does not wait for one still being answered.
        let waitFor = feedback.episodeID == nil ? feedback.requestID : ""
        switch ledger.inFlight.whenLogged(waitFor, submit) {
        case .notInFlight: submit()
        case .parked: break
        case .full: answer.send(Self.retryLater("Too much feedback is waiting for requests in flight; retry shortly.", requestID: requestID))
        }
    }

    static func feedbackResponse(_ result: Result<FeedbackSubmission, StoreError>, feedback: FeedbackRecord, requestID: String) -> HTTPResponse {
        switch result {
        case .success(let submission):
            return HTTPResponse.json(["id": .int(submission.feedbackID), "object": "feedback",
                                      "request_id": .string(feedback.requestID), "duplicate": .bool(submission.duplicate)],
                                     requestID: requestID)
        case .failure(let error):
            return feedbackError(error, requestID: requestID)
        }
    }

    /// A store refusal as the client sees it, whatever shape its feedback came in.
    static func feedbackError(_ error: StoreError, requestID: String) -> HTTPResponse {
        switch error {
        case .unknownRequest(let id) where id.hasPrefix("episode:"):
            return OpenAIError(status: 404, message: "No logged request belongs to the episode '\(id.dropFirst(8))'.",
                               type: "invalid_request_error", param: "episode_id", code: "episode_not_found").response(requestID: requestID)
        case .unknownRequest(let id):
            return OpenAIError(status: 404, message: "No logged request has the id '\(id)'.",
                               type: "invalid_request_error", param: "request_id", code: "request_not_found").response(requestID: requestID)
        case .idempotencyConflict(let message):
            return OpenAIError(status: 409, message: "Idempotency-Key reused for different feedback: \(message)",
                               type: "invalid_request_error", code: "idempotency_conflict").response(requestID: requestID)
        case .storageUnavailable:
            // Not acknowledged: it could not be stored durably. The writer retries the storage on its own.
            var response = OpenAIError.overloaded("The feedback log cannot be written now (disk full, read-only or failing storage); "
                + "retry later (with the same Idempotency-Key, if you sent one).").response(requestID: requestID)
            response.headers.add("Retry-After", "5")
            return response
        case .overloaded, .closed, .busy, .deadlineExceeded:
            return retryLater("The feedback log is busy or closing; retry shortly (with the same Idempotency-Key, if you sent one).", requestID: requestID)
        default:
            return OpenAIError.serverError("The feedback could not be stored.").response(requestID: requestID)
        }
    }

    static func retryLater(_ message: String, requestID: String) -> HTTPResponse {
        var response = OpenAIError.overloaded(message).response(requestID: requestID)
        response.headers.add("Retry-After", "1")
        return response
    }

    /// The string `o[key]`, nil when absent or null; 400 naming the field when it is not a string of at most
    /// `limit` bytes. Shared by every feedback shape.
    static func optionalString(_ o: JSONObject, _ key: String, limit: Int) throws(OpenAIError) -> String? {
        guard let v = o[key], v != .null else { return nil }
        guard let s = v.stringValue else { throw .invalidRequest("'\(key)' must be a string.", param: key) }
        guard s.utf8.count <= limit else { throw .invalidRequest("'\(key)' is longer than \(limit) bytes.", param: key) }
        return s
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
        guard RequestID.isStoredID(requestID) else {
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

        func optionalNumber(_ key: String) -> Result<Double?, OpenAIError> {
            guard let v = o[key], v != .null else { return .success(nil) }
            guard let d = v.doubleValue, d.isFinite else { return .failure(.invalidRequest("'\(key)' must be a number.", param: key)) }
            return .success(d)
        }
        do throws(OpenAIError) {
            record.value = try optionalNumber("value").get()
            record.weight = try optionalNumber("weight").get()
            record.correction = try optionalString(o, "correction", limit: 4 << 20)
            record.comment = try optionalString(o, "comment", limit: maxCommentBytes)
            record.source = try optionalString(o, "source", limit: maxSourceLength)
        } catch {
            return .failure(error)
        }
        if let w = record.weight, w < 0 { return .failure(.invalidRequest("'weight' must not be negative.", param: "weight")) }
        switch signal {
        case .score where record.value == nil:
            return .failure(.invalidRequest("A 'score' signal needs a numeric 'value'.", param: "value"))
        case .edited where record.correction?.allSatisfy(\.isWhitespace) ?? true:
            return .failure(.invalidRequest("An 'edited' signal needs the corrected answer, not empty, in 'correction'.", param: "correction"))
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
