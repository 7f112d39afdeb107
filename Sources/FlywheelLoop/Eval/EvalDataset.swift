import Foundation
import FlywheelJSON
import FlywheelStore

/// One conversation to evaluate: the prompt, the tools it offered, and the reference answer when the dataset
/// has one (the last assistant message of an `sft` line, the preferred output of a `dpo` line, or the answer
/// logged for a request).
public struct EvalItem: Sendable {
    /// The dataset's line number (1-based), or the position of the log row in the selection.
    public var item: Int
    /// The request the line came from (`flywheel_request_id`), or the log row's id.
    public var sourceID: String?
    public var prompt: [JSON]
    public var tools: JSON?
    public var reference: JSON?
    /// Answers already logged (a shadow pair judged offline): nothing is asked of the models, only of the judge.
    public var given: GivenAnswers?
}

/// The two logged answers of a shadow pair: the candidate's side and the other one.
public struct GivenAnswers: Sendable {
    public var candidate: JSON
    public var candidateRequestID: String
    public var baseline: JSON
    public var baselineRequestID: String
    /// The target that gave the baseline's answer.
    public var baselineTarget: String
}

/// Reads evaluation items from an export file (`sft` or `dpo` lines) or from the log. A line that cannot be used
/// is reported with its number and skipped; the rest are evaluated.
public enum EvalDataset {
    public struct Problem: Sendable, Equatable {
        public var line: Int
        public var reason: String
    }

    /// The longest line read (a golden set's lines are conversations, not documents).
    static let maxLineBytes = 8 << 20

    public static func load(path: String) throws -> (items: [EvalItem], problems: [Problem]) {
        var items: [EvalItem] = []
        var problems: [Problem] = []
        try JSONLLines.forEach(path: path, maxLineBytes: maxLineBytes) { number, bytes in
            guard let bytes else {
                return problems.append(Problem(line: number, reason: "longer than \(maxLineBytes) bytes"))
            }
            do {
                items.append(try item(from: JSONParser.parse(bytes, limits: .depthOnly), line: number))
            } catch let error as EvalError {
                problems.append(Problem(line: number, reason: error.message))
            } catch {
                problems.append(Problem(line: number, reason: "not JSON (\(error))"))
            }
        }
        return (items, problems)
    }

    /// An item from one parsed line: `{"messages": [..., assistant]}` (sft), `{"input": {"messages"},
    /// "preferred_output": [assistant]}` (dpo), or `{"prompt": [...], "chosen": [assistant]}` (dpo-trl).
    static func item(from line: JSON, line number: Int) throws -> EvalItem {
        guard case .object(let o) = line else { throw EvalError("not a JSON object") }
        let source = o["flywheel_request_id"]?.stringValue
        var messages: [JSON]
        var reference: JSON?
        var tools = o["tools"]
        if let m = o["messages"]?.arrayValue {
            messages = m
            if let last = m.last, last["role"]?.stringValue == "assistant" {
                reference = last
                messages.removeLast()
            }
        } else if let m = o["input"]?["messages"]?.arrayValue {
            messages = m
            tools = o["input"]?["tools"]
            reference = o["preferred_output"]?.arrayValue?.last
        } else if let m = o["prompt"]?.arrayValue {
            messages = m
            reference = o["chosen"]?.arrayValue?.last
        } else {
            throw EvalError("no 'messages' (sft), 'input.messages' (dpo) or 'prompt' (dpo-trl)")
        }
        guard !messages.isEmpty else { throw EvalError("the conversation before the answer is empty") }
        for (i, m) in messages.enumerated() where m["role"]?.stringValue == nil {
            throw EvalError("message \(i) has no role")
        }
        if tools == .null { tools = nil }
        return EvalItem(item: number, sourceID: source, prompt: messages, tools: tools, reference: reference)
    }

    /// Successful chat completions of the log selection, each with its logged answer as the reference.
    public static func fromLog(_ queries: any LogQueries, filter: RequestFilter, limit: Int?) throws -> (items: [EvalItem], problems: [Problem]) {
        var items: [EvalItem] = []
        var problems: [Problem] = []
        var position = 0
        var filter = filter
        filter.shadows = filter.shadows ?? false
        try queries.forEachRequest(RequestQuery(filter: filter, limit: 500, includeFeedback: false)) { entry in
            let r = entry.record
            guard r.endpoint == "/v1/chat/completions", r.status < 400, r.errorType == nil, !r.incomplete else { return }
            if let limit, items.count >= limit { return }
            position += 1
            guard let (messages, tools) = r.chatPrompt, !messages.isEmpty, let message = r.chatAnswer else {
                problems.append(Problem(line: position, reason: "log row \(r.id) is unreadable"))
                return
            }
            items.append(EvalItem(item: position, sourceID: r.id, prompt: messages, tools: tools, reference: message))
        }
        return (items, problems)
    }
}

extension EvalDataset {
    /// Shadow pairs from the log (a request and its shadow run), the side `candidate` answered as the candidate
    /// and the other side as the baseline, both answers as logged. Pairs where neither side is the candidate,
    /// or one side failed, are reported and skipped.
    public static func fromShadows(_ queries: any LogQueries, filter: RequestFilter, candidate: String,
                                   limit: Int?) throws -> (items: [EvalItem], problems: [Problem]) {
        var items: [EvalItem] = []
        var problems: [Problem] = []
        var filter = filter
        filter.shadows = true
        var position = 0
        var shadows: [RequestRecord] = []
        try queries.forEachRequest(RequestQuery(filter: filter, limit: 500, includeFeedback: false)) { entry in
            if let limit, shadows.count >= limit { return }
            shadows.append(entry.record)
        }
        for shadow in shadows {
            position += 1
            guard let primaryID = shadow.shadowOf, let primary = try queries.request(id: primaryID) else {
                problems.append(Problem(line: position, reason: "shadow \(shadow.id): the request it shadows is not in the log"))
                continue
            }
            let pair = [(shadow, primary), (primary, shadow)].first { $0.0.variant == candidate }
            guard let (mine, theirs) = pair else {
                problems.append(Problem(line: position, reason: "shadow pair \(primary.id): neither side is '\(candidate)'"))
                continue
            }
            guard mine.status < 400, theirs.status < 400, mine.errorType == nil, theirs.errorType == nil,
                  let a = mine.chatAnswer, let b = theirs.chatAnswer,
                  let (messages, tools) = primary.chatPrompt, !messages.isEmpty else {
                problems.append(Problem(line: position, reason: "shadow pair \(primary.id): a side failed or is unreadable"))
                continue
            }
            items.append(EvalItem(item: position, sourceID: primary.id, prompt: messages, tools: tools, reference: nil,
                                  given: GivenAnswers(candidate: a, candidateRequestID: mine.id, baseline: b, baselineRequestID: theirs.id,
                                                      baselineTarget: theirs.variant ?? theirs.modelRequested ?? "?")))
        }
        return (items, problems)
    }
}

/// An evaluation problem for the user: a message, no stack.
public struct EvalError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
