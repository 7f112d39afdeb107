import Foundation
import FlywheelJSON

extension DriftResult {
    /// `{"status", "judged", "baseline_requests", "window_requests", "signals": [{name, score, warn, alert, p_value, status, detail}]}`.
    public var json: JSON {
        func number(_ x: Double?) -> JSON { x.map { .double(($0 * 1e6).rounded() / 1e6) } ?? .null }
        return [
            "status": .string(status.rawValue),
            "judged": .bool(judged),
            "baseline_requests": .int(Int64(baselineCount)),
            "window_requests": .int(Int64(windowCount)),
            "signals": .array(signals.map { s in
                ["name": .string(s.name), "score": number(s.score), "warn": .double(s.warn), "alert": .double(s.alert),
                 "p_value": number(s.pValue), "status": .string(s.status.rawValue), "detail": .string(s.detail)]
            }),
        ]
    }

    /// The result for people.
    public func table() -> String {
        var rows = [["signal", "score", "warn / alert", "p", "status", "detail"]]
        for s in signals {
            rows.append([s.name, s.score.map { String(format: "%.3f", $0) } ?? "-", String(format: "%g / %g", s.warn, s.alert),
                         s.pValue.map { String(format: "%.3f", $0) } ?? "-", s.status == .ok ? "ok" : s.status.rawValue.uppercased(), s.detail])
        }
        var widths = rows[0].map(\.count)
        for r in rows { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = judged
            ? "drift: \(status.rawValue.uppercased()) (\(windowCount) requests against a baseline of \(baselineCount))\n"
            : "drift: NOT JUDGED: too few requests (\(windowCount) in the window, \(baselineCount) in the baseline)\n"
        for r in rows {
            out += r.enumerated().map { i, c in i == r.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ") + "\n"
        }
        return out
    }

    /// A self-contained page: the verdict, and each signal's score drawn against its thresholds (inline SVG,
    /// nothing fetched).
    public func html(title: String) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
                .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
        }
        let colour: [DriftStatus: String] = [.ok: "#2e7d32", .warn: "#ef6c00", .alert: "#c62828", .skipped: "#9e9e9e"]
        var bars = ""
        for (i, s) in signals.enumerated() {
            let y = 20 + i * 34
            let top = max(s.alert * 1.5, s.score ?? 0, 1e-9)
            let width = 360.0
            let w = (s.score ?? 0) / top * width
            bars += "<text x=\"0\" y=\"\(y + 14)\" font-size=\"12\">\(esc(s.name))</text>"
            bars += "<rect x=\"190\" y=\"\(y)\" width=\"\(String(format: "%.1f", w))\" height=\"18\" fill=\"\(colour[s.status]!)\"/>"
            for (mark, label) in [(s.warn, "warn"), (s.alert, "alert")] where mark > 0 {
                let x = 190 + mark / top * width
                bars += "<line x1=\"\(String(format: "%.1f", x))\" x2=\"\(String(format: "%.1f", x))\" y1=\"\(y - 2)\" y2=\"\(y + 20)\" stroke=\"#333\" stroke-dasharray=\"3,2\"><title>\(label) \(mark)</title></line>"
            }
            bars += "<text x=\"560\" y=\"\(y + 14)\" font-size=\"12\">\(s.score.map { String(format: "%.3f", $0) } ?? "skipped")\(s.pValue.map { String(format: " (p %.3f)", $0) } ?? "")</text>"
        }
        let height = 30 + signals.count * 34
        var rows = ""
        for s in signals {
            rows += "<tr><td>\(esc(s.name))</td><td style=\"color:\(colour[s.status]!)\">\(s.status.rawValue)</td><td>\(esc(s.detail))</td></tr>"
        }
        return """
            <!doctype html><html><head><meta charset="utf-8"><title>\(esc(title))</title>
            <style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}td{padding:2px 10px}</style></head><body>
            <h1>\(esc(title)): <span style="color:\(colour[status]!)">\(status.rawValue.uppercased())</span></h1>
            <p>\(windowCount) requests compared with a baseline of \(baselineCount). Bars: each signal's score; dashed lines: its warn and alert thresholds.</p>
            <svg xmlns="http://www.w3.org/2000/svg" width="720" height="\(height)" role="img">\(bars)</svg>
            <table>\(rows)</table></body></html>
            """
    }
}
