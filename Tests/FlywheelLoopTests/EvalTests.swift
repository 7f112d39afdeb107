import FlywheelJSON
import XCTest
@testable import FlywheelLoop

final class EvalChecksTests: XCTestCase {
    func answer(_ content: String) -> JSON { ["role": "assistant", "content": .string(content)] }

    func testTheReferenceDecidesTheChecks() throws {
        let checks = try EvalChecks()
        XCTAssertEqual(checks.run(answer: answer("  team:  billing \n"), reference: answer("team: billing")), ["exact": true])
        XCTAssertEqual(checks.run(answer: answer("team: Billing"), reference: answer("team: billing")), ["exact": false])
        // JSON answers: every reference field must match; extra fields and a code fence are fine; 1 equals 1.0.
        let ref = answer(#"{"team": "billing", "priority": {"level": 1}}"#)
        XCTAssertEqual(checks.run(answer: answer("```json\n{\"priority\": {\"level\": 1.0}, \"team\": \"billing\", \"extra\": true}\n```"), reference: ref),
                       ["json_valid": true, "json_fields": true])
        XCTAssertEqual(checks.run(answer: answer(#"{"team": "sales", "priority": {"level": 1}}"#), reference: ref),
                       ["json_valid": true, "json_fields": false])
        XCTAssertEqual(checks.run(answer: answer("team billing"), reference: ref), ["json_valid": false, "json_fields": false])
        // Tool calls: names in order, arguments equal as JSON whatever their spacing or key order.
        func call(_ name: String, _ args: String) -> JSON {
            ["role": "assistant", "content": .null, "tool_calls": [["id": "c", "type": "function", "function": ["name": .string(name), "arguments": .string(args)]]]]
        }
        XCTAssertEqual(checks.run(answer: call("route", #"{"b": 2, "a": 1}"#), reference: call("route", #"{"a":1,"b":2}"#)), ["tool_call": true])
        XCTAssertEqual(checks.run(answer: call("route", #"{"a": 2}"#), reference: call("route", #"{"a": 1}"#)), ["tool_call": false])
        XCTAssertEqual(checks.run(answer: answer("I would route it"), reference: call("route", "{}")), ["tool_call": false])
        XCTAssertEqual(checks.run(answer: answer("x"), reference: nil), [:])
    }

    func testARegexIsCheckedAndABadOneIsRefused() throws {
        let checks = try EvalChecks(regex: "^team: [a-z]+$")
        XCTAssertEqual(checks.run(answer: answer("team: billing"), reference: nil), ["regex": true])
        XCTAssertEqual(checks.run(answer: answer("Team: Billing"), reference: answer("Team: Billing")), ["exact": true, "regex": false])
        XCTAssertThrowsError(try EvalChecks(regex: "(unclosed"))
    }
}

final class PairwiseJudgeTests: XCTestCase {
    func testTheLastVerdictInAReplyCountsAndNoneIsNil() {
        XCTAssertEqual(PairwiseJudge.verdict(in: "A is better. [[A]]"), .a)
        XCTAssertEqual(PairwiseJudge.verdict(in: "Options: [[A]], [[B]] or [[TIE]]. I pick [[b]]"), .b)
        XCTAssertEqual(PairwiseJudge.verdict(in: "[[TIE]]"), .tie)
        XCTAssertNil(PairwiseJudge.verdict(in: "A is better"))
        XCTAssertNil(PairwiseJudge.verdict(in: "[A]"))
    }

    func testTheOrdersCombineAndDisagreementIsATie() {
        XCTAssertEqual(PairwiseJudge.outcome(candidateFirst: .a, candidateSecond: .b), .win)
        XCTAssertEqual(PairwiseJudge.outcome(candidateFirst: .b, candidateSecond: .a), .loss)
        XCTAssertEqual(PairwiseJudge.outcome(candidateFirst: .a, candidateSecond: .a), .tie)  // position bias
        XCTAssertEqual(PairwiseJudge.outcome(candidateFirst: .tie, candidateSecond: .tie), .tie)
        XCTAssertEqual(PairwiseJudge.outcome(candidateFirst: .a, candidateSecond: nil), .error)
        XCTAssertTrue(PairwiseJudge.agree(candidateFirst: .a, candidateSecond: .b))
        XCTAssertFalse(PairwiseJudge.agree(candidateFirst: .a, candidateSecond: .a))
        XCTAssertFalse(PairwiseJudge.agree(candidateFirst: nil, candidateSecond: .a))
    }

    func testTheJudgeSeesTheConversationAndBothAnswersIncludingToolCalls() {
        let prompt: [JSON] = [["role": "user", "content": "route: printer on fire"]]
        let call: JSON = ["role": "assistant", "content": .null, "tool_calls": [["function": ["name": "route", "arguments": #"{"team":"ops"}"#]]]]
        let messages = PairwiseJudge.messages(rubric: "R", prompt: prompt, tools: nil, first: ["role": "assistant", "content": "ops"], second: call)
        XCTAssertEqual(messages[0]["content"]?.stringValue, "R")
        let user = messages[1]["content"]?.stringValue ?? ""
        XCTAssertTrue(user.contains("printer on fire") && user.contains("<answer_a>\nops\n</answer_a>"), user)
        XCTAssertTrue(user.contains(#"[tool call] route({"team":"ops"})"#), user)
    }
}

final class EvalSummaryTests: XCTestCase {
    func testWilsonIntervalsMatchPublishedValues() throws {
        // 8 of 10: Wilson 95% is [0.490, 0.943]; 0 of 10: [0, 0.278].
        let a = try XCTUnwrap(EvalSummary.wilson(8, 10))
        XCTAssertEqual(a.low, 0.490, accuracy: 0.001)
        XCTAssertEqual(a.high, 0.943, accuracy: 0.001)
        let b = try XCTUnwrap(EvalSummary.wilson(0, 10))
        XCTAssertEqual(b.low, 0, accuracy: 1e-9)
        XCTAssertEqual(b.high, 0.278, accuracy: 0.001)
        XCTAssertNil(EvalSummary.wilson(0, 0))
    }

    func testDatasetLinesOfEveryExportShapeAndTheirProblems() throws {
        let sft = try EvalDataset.item(from: JSONParser.parse(#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "flywheel_request_id": "r1"}"#), line: 3)
        XCTAssertEqual(sft.prompt.count, 1)
        XCTAssertEqual(sft.reference?["content"]?.stringValue, "a")
        XCTAssertEqual(sft.sourceID, "r1")
        XCTAssertEqual(sft.item, 3)
        let dpo = try EvalDataset.item(from: JSONParser.parse(#"{"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": [{"role": "assistant", "content": "good"}], "non_preferred_output": []}"#), line: 1)
        XCTAssertEqual(dpo.reference?["content"]?.stringValue, "good")
        let trl = try EvalDataset.item(from: JSONParser.parse(#"{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "c"}]}"#), line: 1)
        XCTAssertEqual(trl.reference?["content"]?.stringValue, "c")
        let open = try EvalDataset.item(from: JSONParser.parse(#"{"messages": [{"role": "user", "content": "q"}]}"#), line: 1)
        XCTAssertNil(open.reference)
        for bad in [#"[1]"#, #"{"messages": []}"#, #"{"messages": [{"role": "assistant", "content": "only"}]}"#, #"{"messages": [{"content": "x"}]}"#, #"{"x": 1}"#] {
            XCTAssertThrowsError(try EvalDataset.item(from: JSONParser.parse(bad), line: 1), bad)
        }
    }
}
