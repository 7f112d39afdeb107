import Foundation
import FlywheelJSON
import FlywheelRedaction
import FlywheelStore

/// Writes a training set from the log: reads requests page by page, keeps the chat completions the options
/// select, shapes them as the format asks, scrubs, deduplicates and splits them, and writes a manifest that
/// says what was kept and why the rest was not. A bad row is counted and named, never fatal.
public final class DatasetExporter {
    /// The files one export writes.
    public struct Paths: Sendable {
        public var train: String
        public var validation: String
        public var holdout: String
        public var manifest: String

        /// `out.jsonl` → `out.jsonl`, `out.validation.jsonl`, `out.holdout.jsonl`, `out.manifest.json`.
        public init(out: String) {
            let stem = out.hasSuffix(".jsonl") ? String(out.dropLast(6)) : out
            train = out
            validation = stem + ".validation.jsonl"
            holdout = stem + ".holdout.jsonl"
            manifest = stem + ".manifest.json"
        }
    }

    public static let schemaVersion = 1
    private let options: ExportOptions
    private let queries: any LogQueries
    private var scrubber = PIIScrubber()
    private var seen = Set<UInt64>()
    private var near: NearDuplicateIndex?
    private var dropped: [String: Int] = [:]
    private var badRows: [String] = []
    private var read = 0
    /// DPO from rejections: per prompt, an accepted answer and the rejected ones waiting for it.
    private var accepted: [UInt64: JSON] = [:]
    private var rejected: [UInt64: [(id: String, prompt: [JSON], tools: JSON?, answer: JSON)]] = [:]
    private var pendingRejections = 0

    public init(queries: any LogQueries, options: ExportOptions) {
        self.queries = queries
        self.options = options
        if options.deduplicate, let threshold = options.nearDuplicateThreshold {
            near = NearDuplicateIndex(threshold: threshold, memoryLimit: options.nearDuplicateMemory)
        }
    }

    /// A logged chat completion as training material.
    private struct Example {
        var id: String
        var prompt: [JSON]
        var tools: JSON?
        var answer: JSON
        var correction: String?
        var verdict: FeedbackSignal?
        var promptKey: UInt64
    }

    /// Runs the export; returns the manifest (also written beside the files).
    @discardableResult
    public func run(paths: Paths, progress: ((Int) -> Void)? = nil) throws -> JSON {
        let holdoutKeys = options.holdout > 0 ? try lowestPromptKeys(options.holdout) : []
        let train = try JSONLFile(path: paths.train)
        let validation = try JSONLFile(path: paths.validation)
        let holdout = try JSONLFile(path: paths.holdout)
        func write(_ line: JSON, promptKey: UInt64) throws {
            let target = holdoutKeys.contains(promptKey) ? holdout
                : Double(promptKey % 10_000) < options.validationFraction * 10_000 ? validation : train
            try target.write(line)
        }
        try queries.forEachRequest(RequestQuery(filter: options.filter, limit: 500, includeFeedback: true)) { item in
            read += 1
            if read % 10_000 == 0 { progress?(read) }
            guard let example = select(item) else { return }
            for line in lines(for: example) {
                guard unique(line) else { continue }
                try write(line, promptKey: example.promptKey)
            }
        }
        // Rejected answers that found an accepted one for the same prompt become preference pairs.
        if options.format != .sft {
            for (key, waiting) in rejected {
                guard let chosen = accepted[key] else { dropped["no_accepted_alternative", default: 0] += waiting.count; continue }
                for r in waiting {
                    guard r.answer != chosen else { drop("identical_pair"); continue }
                    let line = preference(id: r.id, prompt: r.prompt, tools: r.tools, chosen: chosen, rejected: r.answer)
                    guard unique(line) else { continue }
                    try write(line, promptKey: key)
                }
            }
        }
        let files = try [("train", paths.train, train), ("validation", paths.validation, validation), ("holdout", paths.holdout, holdout)]
            .map { name, path, file -> (String, JSON) in
                let (rows, sha) = try file.close()
                return (name, ["path": .string(path), "rows": .int(Int64(rows)), "sha256": .string(sha)])
            }
        var optionsJSON = JSONObject()
        optionsJSON["format"] = .string(options.format.rawValue)
        optionsJSON["accepted_only"] = .bool(options.acceptedOnly)
        optionsJSON["exclude_rejected"] = .bool(options.excludeRejected)
        optionsJSON["corrected_only"] = .bool(options.correctedOnly)
        optionsJSON["min_score"] = .optional(options.minScore)
        optionsJSON["min_weight"] = .optional(options.minWeight)
        optionsJSON["apply_corrections"] = .bool(options.applyCorrections)
        optionsJSON["include_local"] = .bool(options.includeLocal)
        optionsJSON["include_failed"] = .bool(options.includeFailed)
        optionsJSON["model"] = .optional(options.filter.model)
        optionsJSON["route"] = .optional(options.filter.route)
        optionsJSON["tag"] = .optional(options.filter.tag)
        optionsJSON["excluded_tags"] = .array(options.filter.excludedTags.map { .string($0) })
        optionsJSON["episode"] = .optional(options.filter.episode)
        optionsJSON["since_ms"] = .optional(options.filter.createdFrom.map(Int.init))
        optionsJSON["until_ms"] = .optional(options.filter.createdBefore.map(Int.init))
        let manifest: JSON = [
            "schema_version": .int(Int64(Self.schemaVersion)),
            "created_at": .string(ISO8601DateFormatter().string(from: Date())),
            "options": .object(optionsJSON),
            "requests_read": .int(Int64(read)),
            "dropped": .object(JSONObject(dropped.sorted { $0.key < $1.key }.map { ($0.key, JSON.int(Int64($0.value))) })),
            "bad_rows": .array(badRows.map(JSON.string)),
            "pii_scrubbed": .object(JSONObject(scrubber.counts.sorted { $0.key < $1.key }.map { ($0.key, JSON.int(Int64($0.value))) })),
            "pii_scrubbing": .bool(options.scrubPII),
            "deduplication": deduplicationJSON(),
            "split": ["by": "SHA-256 of the prompt messages", "validation_fraction": .double(options.validationFraction),
                      "holdout_prompts": .int(Int64(holdoutKeys.count))],
            "files": .object(JSONObject(files)),
        ]
        try Data(manifest.prettyPrinted().utf8).write(to: URL(fileURLWithPath: paths.manifest))
        return manifest
    }

    // MARK: selection

    private func drop(_ reason: String) { dropped[reason, default: 0] += 1 }

    /// The example a logged request gives, or nil (counted under the reason it was left out).
    private func select(_ item: RequestWithFeedback) -> Example? {
        let r = item.record
        guard r.endpoint == "/v1/chat/completions" else { drop("not_chat_completion"); return nil }
        // Logged with `x-flywheel-log: metadata`: there is no content to export.
        guard !r.contentWithheld else { drop("content_withheld"); return nil }
        if !options.includeFailed {
            guard r.status < 400, r.errorType == nil else { drop("failed"); return nil }
            guard !r.incomplete else { drop("incomplete"); return nil }
            guard !r.responseTruncated else { drop("truncated"); return nil }
        }
        guard let (messages, tools) = r.chatPrompt, !messages.isEmpty, let message = r.chatAnswer else {
            drop("unreadable_row")
            if badRows.count < 100 { badRows.append(r.id) }
            return nil
        }
        var verdict: FeedbackSignal?
        var correction: String?
        var scores: [Double] = []
        var maxWeight: Double?
        for f in item.feedback {
            switch f.signal {
            case .accepted, .rejected: verdict = f.signal
            case .edited: verdict = .edited; correction = f.correction ?? correction
            case .score: if let v = f.value { scores.append(v) }
            case .comment: break
            }
            if let w = f.weight { maxWeight = max(maxWeight ?? w, w) }
        }
        // A local answer is the model's own output, not something to learn from; a user's correction of it is
        // (the mistakes it corrects are the ones the next model must not make): taken as the corrected answer
        // (sft with --apply-corrections) or as a preference pair (dpo formats).
        if !options.includeLocal, r.route == "local", correction == nil || (options.format == .sft && !options.applyCorrections) {
            drop("local_route")
            return nil
        }
        if options.acceptedOnly, verdict != .accepted { drop("not_accepted"); return nil }
        if options.excludeRejected, verdict == .rejected, options.format == .sft { drop("rejected"); return nil }
        if options.correctedOnly, correction == nil { drop("not_corrected"); return nil }
        if let minScore = options.minScore {
            guard !scores.isEmpty, scores.reduce(0, +) / Double(scores.count) >= minScore else { drop("below_min_score"); return nil }
        }
        if let minWeight = options.minWeight {
            guard let w = maxWeight, w >= minWeight else { drop("below_min_weight"); return nil }
        }
        let prompt = messages.map { scrubbed($0) }
        return Example(id: r.id, prompt: prompt, tools: tools, answer: assistantMessage(message), correction: correction.map { scrub($0) },
                       verdict: verdict, promptKey: Self.promptKey(prompt))
    }

    /// The lines an example gives in the chosen format (DPO pairs from rejections come at the end).
    private func lines(for e: Example) -> [JSON] {
        switch options.format {
        case .sft:
            var answer = e.answer
            if options.applyCorrections, let correction = e.correction {
                answer = ["role": "assistant", "content": .string(correction)]
            }
            // An answer with no text and no tool call teaches nothing.
            if EvalChecks.text(answer["content"]).allSatisfy(\.isWhitespace), answer["tool_calls"]?.arrayValue?.isEmpty ?? true {
                drop("empty_answer")
                return []
            }
            var line = JSONObject()
            line["messages"] = .array(e.prompt + [answer])
            if let tools = e.tools { line["tools"] = tools }
            if options.lineage { line["flywheel_request_id"] = .string(e.id) }
            return [.object(line)]
        case .dpo, .dpoTRL:
            var out: [JSON] = []
            if let correction = e.correction {
                guard e.answer["content"]?.stringValue != correction else { drop("identical_pair"); return [] }
                out.append(preference(id: e.id, prompt: e.prompt, tools: e.tools,
                                      chosen: ["role": "assistant", "content": .string(correction)], rejected: e.answer))
            } else if e.verdict == .accepted {
                // Kept for pairing with a rejection of the same prompt, within the buffer's bound.
                if accepted[e.promptKey] == nil {
                    if accepted.count < options.preferenceBuffer { accepted[e.promptKey] = e.answer } else { drop("accepted_not_buffered") }
                }
            } else if e.verdict == .rejected {
                guard pendingRejections < options.preferenceBuffer else { drop("preference_buffer_full"); return out }
                pendingRejections += 1
                rejected[e.promptKey, default: []].append((e.id, e.prompt, e.tools, e.answer))
            } else {
                drop("no_preference")
            }
            return out
        }
    }

    private func preference(id: String, prompt: [JSON], tools: JSON?, chosen: JSON, rejected: JSON) -> JSON {
        var line = JSONObject()
        if options.format == .dpo {
            var input = JSONObject()
            input["messages"] = .array(prompt)
            if let tools { input["tools"] = tools }
            line["input"] = .object(input)
            line["preferred_output"] = [chosen]
            line["non_preferred_output"] = [rejected]
        } else {
            line["prompt"] = .array(prompt)
            line["chosen"] = [chosen]
            line["rejected"] = [rejected]
        }
        if options.lineage { line["flywheel_request_id"] = .string(id) }
        return .object(line)
    }

    /// The logged answer as a training message: role, content (scrubbed) and tool calls; nothing else.
    private func assistantMessage(_ message: JSON) -> JSON {
        var out = JSONObject()
        out["role"] = "assistant"
        out["content"] = message["content"].map { scrubbed($0) } ?? .null
        if let calls = message["tool_calls"], calls != .null { out["tool_calls"] = calls }
        return .object(out)
    }

    /// A message (or content) with its text scrubbed, when scrubbing is on.
    private func scrubbed(_ value: JSON) -> JSON {
        options.scrubPII ? Self.scrubbed(value, with: &scrubber) : value
    }

    /// `value` with its text scrubbed: string content and text parts, tool calls and their arguments.
    private static func scrubbed(_ value: JSON, with scrubber: inout PIIScrubber) -> JSON {
        switch value {
        case .string(let s): return .string(scrubber.scrub(s))
        case .array(let items): return .array(items.map { scrubbed($0, with: &scrubber) })
        case .object(var o):
            for key in ["content", "text", "arguments", "tool_calls", "function"] {
                if let v = o[key] { o[key] = scrubbed(v, with: &scrubber) }
            }
            return .object(o)
        default: return value
        }
    }

    private func scrub(_ text: String) -> String { options.scrubPII ? scrubber.scrub(text) : text }

    /// The key a prompt is split and held out by (the same in both passes).
    private static func promptKey(_ prompt: [JSON]) -> UInt64 { SHA256.key(JSON.array(prompt).serialized()) }

    /// True the first time a line's content (without its lineage) is seen and nothing near it was; otherwise
    /// the drop is counted (`duplicate` or `near_duplicate`).
    private func unique(_ line: JSON) -> Bool {
        guard options.deduplicate, case .object(var o) = line else { return true }
        o["flywheel_request_id"] = nil
        guard seen.insert(SHA256.key(JSON.object(o).serialized())).inserted else { drop("duplicate"); return false }
        if near != nil {
            var text: [UInt8] = []
            Self.conversationText(line, into: &text)
            if near!.isDuplicate(text) == true { drop("near_duplicate"); return false }
        }
        return true
    }

    /// The text near-duplicates are judged by: every string of the line's messages but the system (and
    /// developer) prompts, tool definitions, roles, ids and lineage, which are shared or random by design.
    static func conversationText(_ value: JSON, into text: inout [UInt8]) {
        switch value {
        case .string(let s):
            text.append(contentsOf: s.utf8)
            text.append(0x0A)
        case .array(let items):
            for item in items { conversationText(item, into: &text) }
        case .object(let o):
            if let role = o["role"]?.stringValue, role == "system" || role == "developer" { return }
            for (key, v) in o where !Self.notConversation.contains(key) {
                conversationText(v, into: &text)
            }
        default: break
        }
    }

    private static let notConversation: Set<String> = ["tools", "role", "id", "tool_call_id", "type", "flywheel_request_id"]

    private func deduplicationJSON() -> JSON {
        guard options.deduplicate else { return "off" }
        var out = JSONObject()
        out["exact"] = "SHA-256 of each line without its lineage"
        if let near {
            out["near"] = [
                "method": "MinHash over word 5-grams of the conversation without system prompts and tool definitions; LSH bands find candidates, each checked against the earlier line's signature",
                "threshold": .double(near.threshold),
                "banding_midpoint": .double((near.bandingMidpoint * 1000).rounded() / 1000),
                "hashes": .int(Int64(NearDuplicateIndex.hashCount)),
                "bands": .int(Int64(near.bands)),
                "rows": .int(Int64(near.rows)),
                "lines_indexed": .int(Int64(near.indexed)),
                "index_bytes": .int(Int64(near.memoryUsed)),
                "index_full_after": near.fullAfter.map { .int(Int64($0)) } ?? .null,
            ]
        } else {
            out["near"] = "off"
        }
        return .object(out)
    }

    /// The holdout: the `count` lowest prompt keys among the examples this export takes (the writing pass's own
    /// selection), so `--holdout N` gives N prompts whatever the options leave out (local answers, rejections,
    /// failures), and the same N every run of the same options on the same log.
    private func lowestPromptKeys(_ count: Int) throws -> Set<UInt64> {
        var keys = Set<UInt64>()
        try queries.forEachRequest(RequestQuery(filter: options.filter, limit: 500, includeFeedback: true)) { item in
            guard let example = select(item) else { return }
            keys.insert(example.promptKey)
            if keys.count > count * 4 + 1024 { keys = Set(keys.sorted().prefix(count)) }
        }
        // The writing pass counts what it drops, the unreadable rows and the PII it replaces.
        dropped = [:]
        badRows = []
        scrubber = PIIScrubber()
        return Set(keys.sorted().prefix(count))
    }
}

/// One JSONL output file: lines buffered in blocks, counted and hashed as they are written.
final class JSONLFile {
    private let handle: FileHandle
    private var buffer: [UInt8] = []
    private let hash = StreamingSHA256()
    private var rows = 0

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
        handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    }

    func write(_ line: JSON) throws {
        line.write(into: &buffer)
        buffer.append(0x0A)
        rows += 1
        if buffer.count >= 1 << 20 { try flush() }
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        hash.update(buffer)
        try handle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    func close() throws -> (rows: Int, sha256: String) {
        try flush()
        try handle.close()
        return (rows, hash.finish())
    }
}
