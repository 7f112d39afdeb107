import Foundation
import FlywheelHTTP
import FlywheelJSON
import FlywheelStore

/// Feedback in other tools' shapes, at their own paths, mapped onto ours, so an app moves to Flywheel without
/// rewriting its feedback code: TensorZero's `POST /feedback`, Langfuse's `POST /api/public/scores` and
/// Helicone's `POST /v1/request/{id}/feedback`. Same limits, signature rule, waits and durability as
/// `/v1/feedback`; `source` records where each row came from.
extension Gateway {
    static let maxMetricNameBytes = 128

    /// TensorZero: `{inference_id | episode_id, metric_name, value, dryrun?}`. `comment` and `demonstration`
    /// are its reserved metrics (a comment; a corrected output); a boolean metric is accepted/rejected, a
    /// number a score. Answers `{"feedback_id": "..."}`.
    func submitTensorZeroFeedback(_ request: GatewayRequest) {
        foreignFeedback(request) { o, now throws(OpenAIError) in
            let inference = o["inference_id"]?.stringValue, episode = o["episode_id"]?.stringValue
            guard (inference == nil) != (episode == nil) else {
                throw .invalidRequest("Give exactly one of 'inference_id' and 'episode_id'.", param: "inference_id")
            }
            let metric = try Self.requiredName(o, "metric_name")
            guard let value = o["value"], value != .null else {
                throw .invalidRequest("Missing required parameter: 'value'.", param: "value", code: "missing_required_parameter")
            }
            var record: FeedbackRecord
            switch (metric, value) {
            case ("comment", .string(let text)):
                record = FeedbackRecord(requestID: "", createdAtMillis: now, signal: .comment)
                record.comment = text
            case ("demonstration", _):
                guard let text = Self.demonstrationText(value) else {
                    throw .invalidRequest("A 'demonstration' value must be the corrected output: a string or text content blocks.", param: "value")
                }
                record = FeedbackRecord(requestID: "", createdAtMillis: now, signal: .edited)
                record.correction = text
            case (_, .bool(let flag)):
                record = FeedbackRecord(requestID: "", createdAtMillis: now, signal: flag ? .accepted : .rejected)
            case (_, _) where value.doubleValue?.isFinite == true:
                record = FeedbackRecord(requestID: "", createdAtMillis: now, signal: .score)
                record.value = value.doubleValue
            default:
                throw .invalidRequest("'value' for metric '\(metric)' must be a boolean or a number ('comment' takes a string).", param: "value")
            }
            record.source = "tensorzero:" + metric
            if let inference {
                guard RequestID.isStoredID(inference) else { throw .invalidRequest("'inference_id' is not a valid request id.", param: "inference_id") }
                record.requestID = inference
            } else if let episode {
                guard RequestID.isSane(episode) else { throw .invalidRequest("'episode_id' is not a valid episode id.", param: "episode_id") }
                record.episodeID = episode
            }
            return (record, o["dryrun"]?.boolValue == true)
        } answer: { submission, _ in
            ["feedback_id": submission.map { .string(String($0.feedbackID)) } ?? .string(RequestID.newUUIDv7())]
        }
    }

    /// Langfuse: `{traceId, name, value, comment?, id?, dataType?}`; `id` is the idempotency key. A BOOLEAN
    /// score is accepted/rejected, a number a score, a categorical (string) value a comment. Answers `{"id"}`.
    func submitLangfuseScore(_ request: GatewayRequest) {
        foreignFeedback(request) { o, now throws(OpenAIError) in
            guard let trace = o["traceId"]?.stringValue, RequestID.isStoredID(trace) else {
                throw .invalidRequest("'traceId' must be the request id (x-request-id) of a logged request.", param: "traceId")
            }
            let name = try Self.requiredName(o, "name")
            let dataType = o["dataType"]?.stringValue?.uppercased()
            guard let value = o["value"], value != .null else {
                throw .invalidRequest("Missing required parameter: 'value'.", param: "value", code: "missing_required_parameter")
            }
            var record: FeedbackRecord
            if dataType == "BOOLEAN" || value.boolValue != nil {
                guard let flag = value.boolValue ?? value.doubleValue.flatMap({ $0 == 1 ? true : $0 == 0 ? false : nil }) else {
                    throw .invalidRequest("A BOOLEAN score's 'value' must be 0 or 1.", param: "value")
                }
                record = FeedbackRecord(requestID: trace, createdAtMillis: now, signal: flag ? .accepted : .rejected)
                record.comment = try Self.optionalString(o, "comment", limit: Self.maxCommentBytes)
            } else if let text = value.stringValue {
                record = FeedbackRecord(requestID: trace, createdAtMillis: now, signal: .comment)
                let comment = try Self.optionalString(o, "comment", limit: Self.maxCommentBytes)
                record.comment = comment.map { "\(text): \($0)" } ?? text
            } else if let number = value.doubleValue, number.isFinite {
                record = FeedbackRecord(requestID: trace, createdAtMillis: now, signal: .score)
                record.value = number
                record.comment = try Self.optionalString(o, "comment", limit: Self.maxCommentBytes)
            } else {
                throw .invalidRequest("'value' must be a number, a boolean or a string.", param: "value")
            }
            record.source = "langfuse:" + name
            if let id = o["id"]?.stringValue {
                guard !id.isEmpty, id.utf8.count <= Self.maxIdempotencyKeyLength else {
                    throw .invalidRequest("'id' must be 1 to \(Self.maxIdempotencyKeyLength) bytes.", param: "id")
                }
                record.idempotencyKey = "langfuse:" + id
            }
            return (record, false)
        } answer: { submission, body in
            ["id": body["id"]?.stringValue.map(JSON.string) ?? .string(String(submission?.feedbackID ?? 0))]
        }
    }

    /// Helicone: `POST /v1/request/{id}/feedback` with `{"rating": true|false}`.
    func submitHeliconeRating(_ request: GatewayRequest) {
        let rest = request.pathRest ?? ""
        guard rest.hasSuffix("/feedback"), let id = Self.percentDecoded(String(rest.dropLast(9))), RequestID.isStoredID(id) else {
            return request.writer.send(OpenAIError.notFound(path: request.http.path).response(requestID: request.requestID))
        }
        foreignFeedback(request) { o, now throws(OpenAIError) in
            guard let rating = o["rating"]?.boolValue else {
                throw .invalidRequest("'rating' must be true or false.", param: "rating")
            }
            var record = FeedbackRecord(requestID: id, createdAtMillis: now, signal: rating ? .accepted : .rejected)
            record.source = "helicone"
            return (record, false)
        } answer: { submission, _ in
            ["id": .string(String(submission?.feedbackID ?? 0)), "rating": .bool(true)]
        }
    }

    /// Shared by the foreign shapes: size limit, JSON, mapping, `Idempotency-Key`, delivery, and the answer in
    /// the shape's own words (`answer` gets nil for a dry run, which stores nothing).
    private func foreignFeedback(_ request: GatewayRequest,
                                 map: (JSONObject, Int64) throws(OpenAIError) -> (FeedbackRecord, dryRun: Bool),
                                 answer: @escaping @Sendable (FeedbackSubmission?, JSONObject) -> JSON) {
        let writer = request.writer
        let requestID = request.requestID
        if let tooLarge = feedbackTooLarge(request) { return writer.send(tooLarge) }
        let object: JSONObject
        do {
            guard case .object(let o) = try JSONParser.parse(request.http.body) else {
                return writer.send(OpenAIError.invalidRequest("The feedback body must be a JSON object.").response(requestID: requestID))
            }
            object = o
        } catch {
            return writer.send(OpenAIError.invalidRequest("We could not parse the JSON body of your request (\(error)).").response(requestID: requestID))
        }
        var record: FeedbackRecord
        let dryRun: Bool
        do throws(OpenAIError) {
            (record, dryRun) = try map(object, WallClock.unixMillis())
            if let key = request.http.headers["Idempotency-Key"] {
                guard !key.isEmpty, key.utf8.count <= Self.maxIdempotencyKeyLength else {
                    throw .invalidRequest("Idempotency-Key must be 1 to \(Self.maxIdempotencyKeyLength) bytes.")
                }
                record.idempotencyKey = key
            }
        } catch {
            return writer.send(error.response(requestID: requestID))
        }
        if dryRun { return writer.send(HTTPResponse.json(answer(nil, object), requestID: requestID)) }
        deliverFeedback(record, request) { result in
            switch result {
            case .success(let submission): return HTTPResponse.json(answer(submission, object), requestID: requestID)
            case .failure(let error): return Self.feedbackError(error, requestID: requestID)
            }
        }
    }

    private static func requiredName(_ o: JSONObject, _ key: String) throws(OpenAIError) -> String {
        guard let name = o[key]?.stringValue, !name.isEmpty else {
            throw .invalidRequest("Missing required parameter: '\(key)' (a string).", param: key, code: "missing_required_parameter")
        }
        guard name.utf8.count <= maxMetricNameBytes, !name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) else {
            throw .invalidRequest("'\(key)' must be at most \(maxMetricNameBytes) bytes without control characters.", param: key)
        }
        return name
    }

    /// A demonstration's text: a string, or the text of content blocks (`[{"type": "text", "text": ...}]`).
    static func demonstrationText(_ value: JSON) -> String? {
        if let text = value.stringValue { return text }
        guard let blocks = value.arrayValue, !blocks.isEmpty else { return nil }
        var parts: [String] = []
        for block in blocks {
            guard let text = block["text"]?.stringValue else { return nil }
            parts.append(text)
        }
        return parts.joined(separator: "\n")
    }
}
