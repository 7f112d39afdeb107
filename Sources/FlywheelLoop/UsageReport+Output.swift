import Foundation
import FlywheelInspect
import FlywheelJSON

extension UsageReport {
    /// The report for machines: `rows` per (model, route) and `total`, every figure under its own name.
    public func json(from: String?, until: String?) -> JSON {
        func row(_ r: Row) -> JSON {
            [
                "model": .string(r.model), "route": .string(r.route), "variant": .optional(r.variant), "requests": .int(Int64(r.requests)),
                "errors": .int(Int64(r.errors)), "error_rate": .double(r.errorRate),
                "prompt_tokens": .int(Int64(r.promptTokens)), "completion_tokens": .int(Int64(r.completionTokens)),
                "latency_ms": ["p50": .optional(r.latency.percentile(0.5)), "p90": .optional(r.latency.percentile(0.9)),
                               "p99": .optional(r.latency.percentile(0.99))],
                "ttft_ms_p50": .optional(r.timeToFirstToken.percentile(0.5)),
                "feedback": ["accepted": .int(Int64(r.accepted)), "rejected": .int(Int64(r.rejected)),
                             "edited": .int(Int64(r.edited)), "acceptance_rate": .optional(r.acceptanceRate),
                             "scores": .int(Int64(r.scores)), "mean_score": .optional(r.meanScore)],
                "cost_usd": .double(r.costUSD), "baseline_cost_usd": .double(r.baselineCostUSD), "saved_usd": .double(r.savedUSD),
            ]
        }
        return ["from": .optional(from), "until": .optional(until), "requests_read": .int(Int64(requestsRead)),
                "rows": .array(rows.map(row)), "total": row(total),
                "keys": .array(keyRows.map { k in
                    ["key": .string(k.model), "requests": .int(Int64(k.requests)), "errors": .int(Int64(k.errors)),
                     "prompt_tokens": .int(Int64(k.promptTokens)), "completion_tokens": .int(Int64(k.completionTokens)),
                     "latency_ms_p50": .optional(k.latency.percentile(0.5)), "cost_usd": .double(k.costUSD)]
                })]
    }

    /// The report for people: one line per (model, route), then the totals.
    public func table() -> String {
        let header = ["model", "route", "variant", "requests", "errors", "tokens in/out", "p50 ms", "p99 ms", "accepted", "cost $", "saved $"]
        func cells(_ r: Row) -> [String] {
            [TerminalText.visible(String(r.model.prefix(48))), TerminalText.visible(String(r.route.prefix(24))),
             TerminalText.visible(String((r.variant ?? "-").prefix(48))), "\(r.requests)", String(format: "%.1f%%", r.errorRate * 100),
             "\(r.promptTokens)/\(r.completionTokens)",
             r.latency.percentile(0.5).map { String(format: "%.0f", $0) } ?? "-",
             r.latency.percentile(0.99).map { String(format: "%.0f", $0) } ?? "-",
             r.acceptanceRate.map { String(format: "%.0f%% of %d", $0 * 100, r.accepted + r.rejected + r.edited) } ?? "-",
             String(format: "%.4f", r.costUSD), r.route == "local" || r.model == "*" ? String(format: "%.4f", r.savedUSD) : "-"]
        }
        let lines = [header] + rows.map(cells) + [cells(total)]
        var widths = header.map(\.count)
        for line in lines { for (i, c) in line.enumerated() { widths[i] = max(widths[i], c.count) } }
        let table = lines.enumerated().map { n, line in
            let text = line.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
            return n == lines.count - 1 ? String(repeating: "-", count: text.count) + "\n" + text : text
        }.joined(separator: "\n")
        return keyRows.isEmpty ? table : table + "\n\n" + keyTable()
    }

    /// Usage and spend per client key.
    func keyTable() -> String {
        let header = ["key", "requests", "errors", "tokens in/out", "p50 ms", "accepted", "cost $"]
        let lines = [header] + keyRows.map { k in
            [TerminalText.visible(String(k.model.prefix(48))), "\(k.requests)", String(format: "%.1f%%", k.errorRate * 100),
             "\(k.promptTokens)/\(k.completionTokens)", k.latency.percentile(0.5).map { String(format: "%.0f", $0) } ?? "-",
             k.acceptanceRate.map { String(format: "%.0f%% of %d", $0 * 100, k.accepted + k.rejected + k.edited) } ?? "-",
             String(format: "%.4f", k.costUSD)]
        }
        var widths = header.map(\.count)
        for line in lines { for (i, c) in line.enumerated() { widths[i] = max(widths[i], c.count) } }
        return lines.map { line in
            line.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}
