import FlywheelJSON
import FlywheelStore
#if canImport(Glibc)
import Glibc
#endif

/// Turns log rows into what an operator reads: one line per request or feedback row, a full JSON object
/// per row for `--json`, and a detailed view for `show`. Logged text is client input: every string meant
/// for a terminal (`line`, `detail`, `jsonLine`) has its control characters made visible (`TerminalText`).
public enum RecordFormatter {
    /// The whole record as one JSON object, with request and response bodies embedded as JSON.
    public static func json(_ r: RequestRecord, feedback: [FeedbackRecord]) -> JSON {
        var o = JSONObject()
        o["type"] = "request"
        o["id"] = .string(r.id)
        o["created_at"] = .string(isoTimestamp(millis: r.createdAtMillis))
        o["method"] = .string(r.method)
        o["endpoint"] = .string(r.endpoint)
        o["model_requested"] = .optional(r.modelRequested)
        o["model_served"] = .optional(r.modelServed)
        o["route"] = .optional(r.route)
        o["episode_id"] = .optional(r.episodeID)
        o["variant"] = .optional(r.variant)
        o["decision"] = r.decisionJSON.flatMap { try? JSONParser.parse($0, limits: .depthOnly) } ?? .null
        o["shadow_of"] = .optional(r.shadowOf)
        o["upstream"] = .optional(r.upstream)
        o["stream"] = .bool(r.stream)
        o["status"] = .int(Int64(r.status))
        o["error"] = r.errorType == nil && r.errorMessage == nil ? .null
            : ["type": .optional(r.errorType), "message": .optional(r.errorMessage)]
        o["latency_ms"] = .double(rounded(r.latencyMillis))
        o["ttft_ms"] = .optional(r.timeToFirstTokenMillis.map(rounded))
        o["upstream_ms"] = .optional(r.upstreamMillis.map(rounded))
        o["usage"] = r.promptTokens == nil && r.completionTokens == nil && r.totalTokens == nil ? .null
            : ["prompt_tokens": .optional(r.promptTokens), "completion_tokens": .optional(r.completionTokens),
               "total_tokens": .optional(r.totalTokens)]
        o["cost_usd"] = .optional(r.costUSD)
        o["tags"] = .array(r.tags.map(JSON.string))
        o["user"] = .optional(r.user)
        o["metadata"] = r.metadataJSON.flatMap { try? JSONParser.parse($0, limits: .depthOnly) } ?? .null
        o["client_key_id"] = .optional(r.clientKeyID)
        o["attempts"] = .int(Int64(r.attempts))
        o["content_withheld"] = .bool(r.contentWithheld)
        o["request"] = r.contentWithheld ? .null : embedded(r.requestJSON)
        o["response"] = r.responseJSON.map(embedded) ?? .null
        o["response_truncated"] = .bool(r.responseTruncated)
        o["incomplete"] = .bool(r.incomplete)
        o["feedback"] = .array(feedback.map(json))
        return .object(o)
    }

    /// What `tail` and `show` print in place of a metadata-only row's content.
    static let withheldNote = "(content withheld: logged with x-flywheel-log: metadata)"

    public static func json(_ f: FeedbackRecord) -> JSON {
        [
            "type": "feedback", "id": .int(f.id), "request_id": .string(f.requestID),
            "created_at": .string(isoTimestamp(millis: f.createdAtMillis)), "signal": .string(f.signal.rawValue),
            "value": .optional(f.value), "correction": .optional(f.correction), "comment": .optional(f.comment),
            "source": .optional(f.source), "weight": .optional(f.weight), "episode_id": .optional(f.episodeID),
        ]
    }

    /// `json(_:feedback:)` as one line of terminal-safe text, for `--json` output.
    public static func jsonLine(_ r: RequestRecord, feedback: [FeedbackRecord]) -> String {
        TerminalText.jsonSafe(json(r, feedback: feedback).serializedString())
    }

    /// `json(_:)` of a feedback row as one line of terminal-safe text.
    public static func jsonLine(_ f: FeedbackRecord) -> String {
        TerminalText.jsonSafe(json(f).serializedString())
    }

    /// One line: time, id, model, route, status, latency, tokens, then a snippet of the exchange.
    public static func line(_ r: RequestRecord) -> String {
        let model = r.modelServed ?? r.modelRequested ?? "-"
        let tokens = r.totalTokens.map { "\($0)tok" } ?? "-"
        let latency = formatMillis(r.latencyMillis)
        var snippet: String
        if let error = r.errorMessage ?? r.errorType {
            snippet = "error: " + error
        } else if r.contentWithheld {
            snippet = Self.withheldNote
        } else {
            let prompt = promptSnippet(r.requestJSON)
            let answer = r.responseJSON.flatMap(answerSnippet)
            snippet = [prompt.map { "\"\($0)\"" }, answer.map { "→ \"\($0)\"" }].compactMap { $0 }.joined(separator: " ")
        }
        snippet = clip(snippet, 100)
        let flags = (r.stream ? " stream" : "") + (r.incomplete ? " incomplete" : "") + (r.responseTruncated ? " truncated" : "")
        return TerminalText.visible("\(isoTimestamp(millis: r.createdAtMillis))  \(r.id)  \(model)  \(r.route ?? "-")\(flags)  \(r.status)  \(latency)  \(tokens)  \(snippet)")
    }

    public static func line(_ f: FeedbackRecord) -> String {
        var parts = ["\(isoTimestamp(millis: f.createdAtMillis))  \(f.requestID)  feedback  \(f.signal.rawValue)"]
        if let v = f.value { parts.append("value=\(formatNumber(v))") }
        if let w = f.weight { parts.append("weight=\(formatNumber(w))") }
        if let s = f.source { parts.append("source=\(s)") }
        if let c = f.comment { parts.append("\"\(clip(c, 60))\"") }
        if let c = f.correction { parts.append("correction=\"\(clip(c, 60))\"") }
        return TerminalText.visible(parts.joined(separator: "  "))
    }

    /// The multi-line view `flywheel show` prints.
    public static func detail(_ r: RequestRecord, feedback: [FeedbackRecord]) -> String {
        var out = ""
        func field(_ name: String, _ value: String?) {
            guard let value else { return }
            out += name.padding(toLength: 16) + TerminalText.visible(value) + "\n"
        }
        field("id", r.id)
        field("time", isoTimestamp(millis: r.createdAtMillis))
        field("endpoint", "\(r.method) \(r.endpoint)\(r.stream ? " (stream)" : "")")
        field("model", r.modelRequested.map { req in r.modelServed.map { $0 == req ? req : "\(req) → served as \($0)" } ?? req })
        field("route", r.route.map { route in r.upstream.map { "\(route) via \($0)" } ?? route })
        field("shadow of", r.shadowOf)
        field("variant", r.variant.map { variant in r.decisionJSON.map { "\(variant) (\($0))" } ?? variant })
        field("status", String(r.status))
        field("error", r.errorMessage.map { msg in r.errorType.map { "\($0): \(msg)" } ?? msg } ?? r.errorType)
        field("latency", formatMillis(r.latencyMillis) + (r.timeToFirstTokenMillis.map { ", first byte " + formatMillis($0) } ?? "")
              + (r.upstreamMillis.map { ", upstream " + formatMillis($0) } ?? ""))
        field("attempts", r.attempts > 1 ? String(r.attempts) : nil)
        field("tokens", r.totalTokens.map { "\($0) (prompt \(r.promptTokens ?? 0), completion \(r.completionTokens ?? 0))" })
        field("cost", r.costUSD.map { "$" + formatNumber($0) })
        field("tags", r.tags.isEmpty ? nil : r.tags.joined(separator: ", "))
        field("user", r.user)
        field("episode", r.episodeID)
        field("metadata", r.metadataJSON)
        field("client key", r.clientKeyID)
        field("incomplete", r.incomplete ? "yes: the response ended early (client gone or server stopping); logged as far as it got" : nil)
        field("truncated", r.responseTruncated ? "yes: the logged response was cut at the size cap; the client got all of it" : nil)
        field("content", r.contentWithheld ? "withheld: the client asked for metadata only (x-flywheel-log: metadata)" : nil)
        if r.contentWithheld {
            out += "\nrequest:\n\(Self.withheldNote)\n\nresponse:\n\(Self.withheldNote)\n"
        } else {
            out += "\nrequest:\n" + TerminalText.visible(pretty(r.requestJSON), multiline: true) + "\n"
            out += "\nresponse:\n" + (r.responseJSON.map { TerminalText.visible(pretty($0), multiline: true) } ?? "(none)") + "\n"
        }
        out += "\nfeedback:\n"
        if feedback.isEmpty { out += "(none)\n" }
        for f in feedback { out += "  " + line(f) + "\n" }
        return out
    }

    // MARK: pieces

    static func embedded(_ text: String) -> JSON {
        (try? JSONParser.parse(text, limits: .depthOnly)) ?? .string(text)
    }

    static func pretty(_ text: String) -> String {
        guard let json = try? JSONParser.parse(text, limits: .depthOnly) else { return text }
        return json.prettyPrinted()
    }

    /// The last user message (chat) or the prompt (completions).
    static func promptSnippet(_ requestJSON: String) -> String? {
        guard let request = try? JSONParser.parse(requestJSON, limits: .depthOnly) else { return nil }
        if let messages = request["messages"]?.arrayValue {
            let last = messages.last { $0["role"]?.stringValue == "user" } ?? messages.last
            return last.flatMap { contentText($0["content"]) }.map { clip($0, 40) }
        }
        if let prompt = request["prompt"]?.stringValue { return clip(prompt, 40) }
        if let input = request["input"] { return clip(input.stringValue ?? input.serializedString(), 40) }
        return nil
    }

    static func answerSnippet(_ responseJSON: String) -> String? {
        guard let response = try? JSONParser.parse(responseJSON, limits: .depthOnly) else { return nil }
        if let choice = response["choices"]?[0] {
            if let text = contentText(choice["message"]?["content"]) ?? choice["text"]?.stringValue { return clip(text, 40) }
            if let call = choice["message"]?["tool_calls"]?[0]?["function"]?["name"]?.stringValue { return "tool_call \(call)" }
        }
        if let data = response["data"]?.arrayValue { return "\(data.count) item(s)" }
        return nil
    }

    /// Message content as text: a string, or the text parts of a content array.
    static func contentText(_ content: JSON?) -> String? {
        if let s = content?.stringValue { return s }
        if let parts = content?.arrayValue {
            let texts = parts.compactMap { $0["text"]?.stringValue }
            return texts.isEmpty ? nil : texts.joined(separator: " ")
        }
        return nil
    }

    static func clip(_ s: String, _ limit: Int) -> String {
        let flat = s.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count <= limit ? flat : String(flat.prefix(limit - 1)) + "…"
    }

    static func rounded(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }

    static func formatMillis(_ ms: Double) -> String {
        ms >= 1000 ? String(format1(ms / 1000)) + "s" : String(format1(ms)) + "ms"
    }

    static func format1(_ v: Double) -> String {
        let tenths = Int((v * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }

    static func formatNumber(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }

    /// `2026-11-29T02:10:00.123Z`
    public static func isoTimestamp(millis: Int64) -> String {
        var seconds = time_t(millis / 1000)
        var tm = tm()
        gmtime_r(&seconds, &tm)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = Int(millis % 1000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(tm.tm_year + 1900)-\(two(tm.tm_mon + 1))-\(two(tm.tm_mday))T\(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)).\(msText)Z"
    }
}

extension String {
    func padding(toLength n: Int) -> String { count >= n ? self + " " : self + String(repeating: " ", count: n - count) }
}
