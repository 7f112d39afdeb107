import FlywheelTesting

/// Configuration text for gateway tests: what a user would write in the YAML file.
enum GatewayTestConfiguration {
    static let upstreamKey = "sk-upstream-secret-0123"

    /// One upstream entry. Fast retries; the timeouts only bound a broken test.
    static func upstream(_ name: String, url: String, retries: Int = 2) -> String {
        """
          - name: \(name)
            base_url: \(url)
            api_key: \(upstreamKey)
            timeouts: {connect: 5, first_byte: 20, total: 60}
            retries: {max: \(retries), initial_backoff: 0.001, max_backoff: 0.01}

        """
    }

    /// A route entry.
    static func route(_ model: String, _ upstreams: [String]) -> String {
        "  - model: \"\(model)\"\n    upstreams: [\(upstreams.joined(separator: ", "))]\n"
    }

    /// A whole configuration: upstreams, routes and anything else (`extra`, top-level sections).
    static func yaml(upstreams: [String], routes: [String], extra: String = "") -> String {
        """
        server:
          shutdown_grace: 2
        log:
          flush_interval: 0.01
        upstreams:
        \(upstreams.joined())routes:
        \(routes.joined())\(extra)
        """
    }

    /// Every model routed to one fake upstream named "fake".
    static func catchAll(_ fake: FakeUpstream, retries: Int = 2, extra: String = "") -> String {
        yaml(upstreams: [upstream("fake", url: fake.baseURL, retries: retries)], routes: [route("*", ["fake"])], extra: extra)
    }

    static func chatBody(_ text: String, model: String = "fake-model", stream: Bool = false, includeUsage: Bool = false) -> String {
        var body = #"{"model":"\#(model)","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"\#(text)"}]"#
        if stream { body += #","stream":true"# }
        if includeUsage { body += #","stream_options":{"include_usage":true}"# }
        return body + "}"
    }
}
