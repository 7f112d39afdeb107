import Foundation
import FlywheelJSON
import FlywheelStore
import FlywheelUpstream
import Synchronization

/// What an evaluation compares and how.
public struct EvalOptions: Sendable {
    /// The running gateway, e.g. `http://127.0.0.1:8080` (requests go through its routes, policies and local
    /// models, and are logged like any other, tagged `eval` and `eval:<run id>`).
    public var gateway: String
    public var apiKey: String?
    public var candidate: String
    /// Nil: the dataset's reference answers are the baseline.
    public var baseline: String?
    public var judge: String?
    public var rubric = PairwiseJudge.defaultRubric
    public var checks: EvalChecks
    public var concurrency = 4
    /// Seconds one request may take.
    public var timeout = 120.0
    /// Times a judge reply without a verdict (or a failed judge request) is asked again.
    public var judgeRetries = 2
    /// Sent with candidate and baseline requests (0: their most likely answer).
    public var temperature: Double? = 0
    public var maxTokens: Int?

    public init(gateway: String, candidate: String, checks: EvalChecks) {
        self.gateway = gateway
        self.candidate = candidate
        self.checks = checks
    }

    public var json: JSON {
        var o = JSONObject()
        o["gateway"] = .string(gateway)
        o["candidate"] = .string(candidate)
        o["baseline"] = .optional(baseline)
        o["judge"] = .optional(judge)
        o["rubric"] = rubric == PairwiseJudge.defaultRubric ? "default" : .string(rubric)
        o["expect_regex"] = .optional(checks.regex)
        o["concurrency"] = .int(Int64(concurrency))
        o["timeout"] = .double(timeout)
        o["judge_retries"] = .int(Int64(judgeRetries))
        o["temperature"] = temperature.map(JSON.double) ?? .null
        o["max_tokens"] = maxTokens.map { .int(Int64($0)) } ?? .null
        return .object(o)
    }
}

/// Runs items through the gateway: the candidate's answer, the baseline's (or the reference), the checks, and
/// the judge's two orders. Items run `concurrency` at a time, each on a worker thread with its own connection;
/// each result is handed to `record` as soon as it is complete (the CLI stores it, so a run can resume).
public final class EvalRunner: Sendable {
    public let options: EvalOptions
    public let runID: String
    private let chatURL: String

    public init(options: EvalOptions, runID: String) {
        self.options = options
        self.runID = runID
        var base = options.gateway
        while base.hasSuffix("/") { base.removeLast() }
        if base.hasSuffix("/v1") { base.removeLast(3) }
        chatURL = base + "/v1/chat/completions"
    }

    /// Evaluates `items`; `record` is called once per item, from the worker threads (one at a time).
    public func run(_ items: [EvalItem], record: @escaping @Sendable (EvalItem, JSON) -> Void) throws {
        guard !items.isEmpty else { return }
        let next = Atomic<Int>(0)
        let recordLock = Mutex(())
        let failures = Mutex<[String]>([])
        let workers = max(1, min(options.concurrency, items.count))
        // Threads of their own: the workers block on the network, and a dispatch pool sized to the cores would
        // run only that many at once.
        let done = DispatchGroup()
        for n in 0..<workers {
            done.enter()
            let thread = Thread { [self] in
                defer { done.leave() }
                let client: BlockingHTTPClient
                do {
                    client = try BlockingHTTPClient()
                } catch {
                    failures.withLock { $0.append("\(error)") }
                    return
                }
                while true {
                    let index = next.add(1, ordering: .relaxed).oldValue
                    guard index < items.count else { return }
                    let result = evaluate(items[index], client: client)
                    recordLock.withLock { _ in record(items[index], result) }
                }
            }
            thread.name = "flywheel-eval-\(n)"
            thread.start()
        }
        done.wait()
        if let failure = failures.withLock({ $0.first }) { throw EvalError("could not start a worker: \(failure)") }
    }

    // MARK: one item

    /// The item's result as stored: `{"item", "source_id", "candidate": {...}, "baseline": {...}, "judge": {...}}`.
    func evaluate(_ item: EvalItem, client: BlockingHTTPClient) -> JSON {
        var result = JSONObject()
        result["item"] = .int(Int64(item.item))
        result["source_id"] = .optional(item.sourceID)
        if let given = item.given {
            // A shadow pair: both answers are in the log; only the judge is asked.
            result["candidate"] = ["request_id": .string(given.candidateRequestID), "answer": given.candidate, "logged": true]
            result["baseline"] = ["request_id": .string(given.baselineRequestID), "answer": given.baseline, "logged": true,
                                  "target": .string(given.baselineTarget)]
            if let judge = options.judge {
                result["judge"] = judgePair(judge, item, candidate: given.candidate, baseline: given.baseline, client: client)
            }
            return .object(result)
        }
        let candidate = answer(options.candidate, item, client: client)
        result["candidate"] = .object(checked(candidate, item))

        var baselineMessage = item.reference
        if let baseline = options.baseline {
            let answered = answer(baseline, item, client: client)
            result["baseline"] = .object(checked(answered, item))
            baselineMessage = answered.message
        } else if item.reference != nil {
            result["baseline"] = ["reference": true]
        }

        if let judge = options.judge {
            if let mine = candidate.message, let theirs = baselineMessage {
                result["judge"] = judgePair(judge, item, candidate: mine, baseline: theirs, client: client)
            } else {
                let why = candidate.message == nil ? "the candidate gave no answer" : "there is no baseline answer (give --baseline or a dataset with references)"
                result["judge"] = ["outcome": "error", "error": .string(why)]
            }
        }
        return .object(result)
    }

    /// An answer's stored form with its checks against the item's reference (and the regex): `checks` by name
    /// and `passed`. No answer fails every check.
    private func checked(_ answer: Answer, _ item: EvalItem) -> JSONObject {
        var out = answer.json
        guard let message = answer.message else {
            out["passed"] = false
            return out
        }
        guard item.reference != nil || options.checks.regex != nil else { return out }
        let checks = options.checks.run(answer: message, reference: item.reference)
        out["checks"] = .object(JSONObject(checks.sorted { $0.key < $1.key }.map { ($0.key, .bool($0.value)) }))
        out["passed"] = .bool(checks.values.allSatisfy { $0 })
        return out
    }

    struct Answer {
        var message: JSON?
        var requestID: String?
        var latencyMillis: Double?
        var error: String?
        var attempts = 0

        var json: JSONObject {
            var o = JSONObject()
            o["request_id"] = .optional(requestID)
            o["latency_ms"] = latencyMillis.map { .double(($0 * 10).rounded() / 10) } ?? .null
            o["answer"] = message ?? .null
            o["error"] = .optional(error)
            o["attempts"] = .int(Int64(attempts))
            return o
        }
    }

    /// One model's answer to the item; an overloaded or failing target is asked again (up to three times,
    /// honouring `Retry-After`), then the error is recorded.
    func answer(_ model: String, _ item: EvalItem, client: BlockingHTTPClient) -> Answer {
        var body = JSONObject()
        body["model"] = .string(model)
        body["messages"] = .array(item.prompt)
        if let tools = item.tools { body["tools"] = tools }
        if let t = options.temperature { body["temperature"] = .double(t) }
        if let m = options.maxTokens { body["max_tokens"] = .int(Int64(m)) }
        return call(JSON.object(body).serialized(), tag: RequestFilter.evaluationTags[0], attempts: 3, client: client)
    }

    private func call(_ body: [UInt8], tag: String, attempts: Int, client: BlockingHTTPClient) -> Answer {
        var headers = [("Content-Type", "application/json"), ("x-flywheel-tags", "\(tag),eval:\(runID)")]
        if let key = options.apiKey { headers.append(("Authorization", "Bearer \(key)")) }
        var out = Answer()
        for attempt in 1...attempts {
            out.attempts = attempt
            do {
                let response = try client.post(chatURL, body: body, headers: headers, timeout: options.timeout,
                                               keepHeaders: ["x-request-id", "retry-after"])
                out.requestID = response.headers["x-request-id"]
                out.latencyMillis = response.seconds * 1000
                let parsed = try? JSONParser.parse(response.body, limits: .depthOnly)
                if response.status == 200, let message = parsed?["choices"]?[0]?["message"], message.objectValue != nil {
                    out.message = message
                    out.error = nil
                    return out
                }
                let detail = parsed?["error"]?["message"]?.stringValue.map { String($0.prefix(300)) } ?? "no OpenAI error body"
                out.error = "HTTP \(response.status): \(detail)"
                guard response.status == 429 || response.status >= 500, attempt < attempts else { return out }
                let wait = response.headers["retry-after"].flatMap(Double.init) ?? Double(attempt) * 0.5
                Thread.sleep(forTimeInterval: min(max(wait, 0.05), 5))
            } catch {
                out.error = error.description
                guard attempt < attempts else { return out }
                Thread.sleep(forTimeInterval: Double(attempt) * 0.5)
            }
        }
        return out
    }

    /// The two orders, each asked until it gives a verdict (or the retries run out).
    func judgePair(_ judge: String, _ item: EvalItem, candidate: JSON, baseline: JSON, client: BlockingHTTPClient) -> JSON {
        var orders: [JSON] = []
        var verdicts: [PairwiseJudge.Verdict?] = []
        for (name, first, second) in [("candidate_first", candidate, baseline), ("candidate_second", baseline, candidate)] {
            var body = JSONObject()
            body["model"] = .string(judge)
            body["messages"] = .array(PairwiseJudge.messages(rubric: options.rubric, prompt: item.prompt, tools: item.tools,
                                                             first: first, second: second))
            body["temperature"] = .double(0)
            var verdict: PairwiseJudge.Verdict?
            var last = Answer()
            var asked = 0
            while verdict == nil && asked <= options.judgeRetries {
                asked += 1
                last = call(JSON.object(body).serialized(), tag: RequestFilter.evaluationTags[1], attempts: 2, client: client)
                if let reply = last.message { verdict = PairwiseJudge.verdict(in: EvalChecks.text(reply["content"])) }
            }
            var o = JSONObject()
            o["order"] = .string(name)
            o["verdict"] = verdict.map { .string($0.rawValue) } ?? .null
            o["request_id"] = .optional(last.requestID)
            o["asked"] = .int(Int64(asked))
            if verdict == nil {
                o["error"] = .string(last.error ?? "no [[A]], [[B]] or [[TIE]] in the reply")
                o["reply"] = last.message.map { .string(String(EvalChecks.text($0["content"]).prefix(500))) } ?? .null
            }
            orders.append(.object(o))
            verdicts.append(verdict)
        }
        let outcome = PairwiseJudge.outcome(candidateFirst: verdicts[0], candidateSecond: verdicts[1])
        let consistent = PairwiseJudge.agree(candidateFirst: verdicts[0], candidateSecond: verdicts[1])
        return ["outcome": .string(outcome.rawValue), "consistent": .bool(consistent), "orders": .array(orders)]
    }
}
