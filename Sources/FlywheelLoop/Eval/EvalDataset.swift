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
        guard let file = fopen(path, "r") else {
            throw EvalError("cannot read the dataset \(path): \(String(cString: strerror(errno)))")
        }
        defer { fclose(file) }
        var items: [EvalItem] = []
        var problems: [Problem] = []
        var lineNumber = 0
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        while true {
            let length = getline(&buffer, &capacity, file)
            if length < 0 { break }
            lineNumber += 1
            guard let buffer, length > 0 else { continue }
            guard length <= maxLineBytes else {
                problems.append(Problem(line: lineNumber, reason: "longer than \(maxLineBytes) bytes"))
                continue
            }
            let bytes = UnsafeRawBufferPointer(start: buffer, count: length)
            if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { continue }
            do {
                items.append(try item(from: JSONParser.parse(Array(bytes), limits: .depthOnly), line: lineNumber))
            } catch let error as EvalError {
                problems.append(Problem(line: lineNumber, reason: error.message))
            } catch {
                problems.append(Problem(line: lineNumber, reason: "not JSON (\(error))"))
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
            guard let request = try? JSONParser.parse(r.requestJSON, limits: .depthOnly),
                  let messages = request["messages"]?.arrayValue, !messages.isEmpty,
                  let text = r.responseJSON, let response = try? JSONParser.parse(text, limits: .depthOnly),
                  let message = response["choices"]?[0]?["message"], message.objectValue != nil else {
                problems.append(Problem(line: position, reason: "log row \(r.id) is unreadable"))
                return
            }
            var tools = request["tools"]
            if tools == .null { tools = nil }
            items.append(EvalItem(item: position, sourceID: r.id, prompt: messages, tools: tools, reference: message))
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
