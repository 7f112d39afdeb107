import FlywheelJSON

/// LLM-as-judge, pairwise: the judge sees the conversation and two answers, A and B, and names the better one
/// or a tie. It is asked twice with the positions swapped, because judges favour a position (MT-Bench, Zheng
/// et al. 2023, found GPT-4 consistent under a swap only about 65% of the time); two orders that disagree
/// count as a tie. A reply with no verdict is asked again, then counted as an error, never as a win.
public enum PairwiseJudge {
    public enum Verdict: String, Sendable {
        case a = "A", b = "B", tie = "TIE"
    }

    public enum Outcome: String, Sendable {
        case win, tie, loss, error
    }

    /// The default rubric: helpfulness and correctness for the user's task, nothing about style or length.
    public static let defaultRubric = """
        You are an impartial judge comparing two answers to the same conversation. Decide which answer better \
        completes the user's task: it is correct, follows the instructions and the required format, uses tools \
        correctly when tools are offered, and contains nothing false. Do not prefer an answer for its length, \
        its style or its position. If both are equally good or equally bad, say it is a tie. Think briefly, then \
        end your reply with exactly one verdict: [[A]] if answer A is better, [[B]] if answer B is better, or \
        [[TIE]].
        """

    /// The judge's messages for one order.
    public static func messages(rubric: String, prompt: [JSON], tools: JSON?, first: JSON, second: JSON) -> [JSON] {
        var conversation = ""
        for m in prompt {
            conversation += "[\(m["role"]?.stringValue ?? "?")]\n\(render(m))\n\n"
        }
        if let tools, let names = tools.arrayValue?.compactMap({ $0["function"]?["name"]?.stringValue }), !names.isEmpty {
            conversation = "[tools offered] \(names.joined(separator: ", "))\n\n" + conversation
        }
        let user = """
            <conversation>
            \(conversation.trimmingSuffixNewlines())
            </conversation>

            <answer_a>
            \(render(first))
            </answer_a>

            <answer_b>
            \(render(second))
            </answer_b>
            """
        return [["role": "system", "content": .string(rubric)], ["role": "user", "content": .string(user)]]
    }

    /// A message as text: its content, then its tool calls as `name(arguments)`. The prompt's own tags and the
    /// verdict markers are broken up inside it, so an answer cannot close its section or cast a verdict.
    static func render(_ message: JSON) -> String {
        var out = EvalChecks.text(message["content"])
        for call in message["tool_calls"]?.arrayValue ?? [] {
            let name = call["function"]?["name"]?.stringValue ?? "?"
            let args = call["function"]?["arguments"]?.stringValue ?? ""
            out += (out.isEmpty ? "" : "\n") + "[tool call] \(name)(\(args))"
        }
        return neutralized(out)
    }

    static func neutralized(_ text: String) -> String {
        text.replacingOccurrences(of: "[[", with: "[ [").replacingOccurrences(of: "]]", with: "] ]")
            .replacingOccurrences(of: "<answer", with: "< answer").replacingOccurrences(of: "</answer", with: "< /answer")
            .replacingOccurrences(of: "<conversation", with: "< conversation").replacingOccurrences(of: "</conversation", with: "< /conversation")
    }

    /// The verdict in a judge's reply: the last of `[[A]]`, `[[B]]`, `[[TIE]]` it contains (judges restate the
    /// options before deciding). Nil when there is none.
    public static func verdict(in reply: String) -> Verdict? {
        let upper = reply.uppercased()
        var best: (position: String.Index, verdict: Verdict)?
        for verdict in [Verdict.a, .b, .tie] {
            if let range = upper.range(of: "[[\(verdict.rawValue)]]", options: .backwards),
               best == nil || range.lowerBound > best!.position {
                best = (range.lowerBound, verdict)
            }
        }
        return best?.verdict
    }

    /// The candidate's outcome from the two orders: candidate first, then candidate second.
    public static func outcome(candidateFirst: Verdict?, candidateSecond: Verdict?) -> Outcome {
        guard let one = candidateFirst, let two = candidateSecond else { return .error }
        let first = forCandidate(one, candidateIsA: true), second = forCandidate(two, candidateIsA: false)
        return first == second ? first : .tie
    }

    /// Whether the two orders gave the candidate the same outcome (the judge was not swayed by position).
    public static func agree(candidateFirst: Verdict?, candidateSecond: Verdict?) -> Bool {
        guard let one = candidateFirst, let two = candidateSecond else { return false }
        return forCandidate(one, candidateIsA: true) == forCandidate(two, candidateIsA: false)
    }

    private static func forCandidate(_ verdict: Verdict, candidateIsA: Bool) -> Outcome {
        switch verdict {
        case .tie: return .tie
        case .a: return candidateIsA ? .win : .loss
        case .b: return candidateIsA ? .loss : .win
        }
    }
}

extension String {
    func trimmingSuffixNewlines() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}
