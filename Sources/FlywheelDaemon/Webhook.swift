import FlywheelOutput
import FlywheelJSON
import FlywheelUpstream
import Foundation

/// The daemon's notices to an operator's webhook (a drift alert, a rollout step): one JSON POST of `fields`
/// plus `event` and `at`, 5 s at most; a failure or a refusal is told with `say`, never retried.
enum Webhook {
    static func post(_ url: String, event: String, _ fields: JSONObject, what: String, say: @Sendable (LogLevel, String) -> Void) {
        var body = fields
        body["event"] = .string(event)
        body["at"] = .string(ISO8601DateFormatter().string(from: Date()))
        do {
            let response = try BlockingHTTPClient().post(url, body: JSON.object(body).serialized(),
                                                         headers: [("Content-Type", "application/json")], timeout: 5)
            if response.status >= 300 { say(.warn, "\(what) webhook answered \(response.status)") }
        } catch {
            say(.warn, "\(what) webhook failed: \(error)")
        }
    }
}
