import Yams

/// Rejects keys the configuration does not know, so a typo (`shutdown_grase`) is a start-up error naming the
/// key and its place instead of a setting silently left at its default.
enum ConfigKeyChecker {
    /// The accepted shape: a mapping of known keys, a list of one shape, or anything (free-form values).
    indirect enum Shape: Sendable {
        case mapping([String: Shape])
        case list(Shape)
        case mapOf(Shape)  // any key, each value of one shape
        case any
    }

    static let schema: Shape = .mapping([
        "server": .mapping(Dictionary(uniqueKeysWithValues: [
            "listen", "event_loops", "max_body_bytes", "max_header_bytes", "max_connections", "request_timeout",
            "idle_timeout", "write_timeout", "shutdown_grace", "max_response_bytes", "max_buffered_body_bytes",
            "log_level", "log_format", "access_log",
        ].map { ($0, Shape.any) }).merging([
            "tls": .mapping(["cert_file": .any, "key_file": .any, "client_ca_file": .any, "client_auth": .any,
                             "handshake_timeout": .any]),
        ]) { $1 }),
        "auth": .mapping(["keys": .list(.mapping(["id": .any, "key": .any, "key_env": .any])),
                          "admin_key": .any, "admin_key_env": .any, "metrics_require_admin": .any, "allow_open": .any]),
        "log": .mapping(["path": .any, "queue_capacity": .any, "batch_size": .any, "flush_interval": .any, "cache_mb": .any,
                         "max_size_mb": .any, "feedback_durability": .any,
                         "retention_days": .any, "retention_days_with_feedback": .any, "prune_interval": .any, "prune_batch_size": .any,
                         "redact": .any]),
        "feedback": .mapping(["webhook_secret": .any, "webhook_secret_env": .any, "max_body_bytes": .any,
                              "signature_tolerance": .any, "wait_timeout": .any, "source_weights": .mapOf(.any)]),
        "upstreams": .list(.mapping([
            "name": .any, "base_url": .any, "api_key": .any, "api_key_env": .any, "headers": .mapOf(.any),
            "timeouts": .mapping(["connect": .any, "first_byte": .any, "total": .any, "idle": .any]),
            "retries": .mapping(["max": .any, "initial_backoff": .any, "max_backoff": .any]),
        ])),
        "upstream_tls": .mapping(["ca_bundle": .any, "verify": .any]),
        "routes": .list(.mapping(["model": .any, "upstreams": .any, "upstream": .any, "upstream_model": .any, "name": .any, "retention_days": .any])),
        "prices": .mapOf(.mapping(["input": .any, "output": .any])),
        "local_models": .list(.mapping([
            "name": .any, "path": .any, "context_length": .any, "chat_template": .any, "chat_template_file": .any, "retention_days": .any,
        ])),
        "inference": .mapping([
            "threads": .any, "slots": .any, "max_queued": .any, "prompt_chunk": .any, "prompt_chunk_while_decoding": .any, "kv_cache_mb": .any, "max_tokens_limit": .any,
        ]),
        "drift": .mapping(Dictionary(uniqueKeysWithValues: [
            "baseline", "baseline_window", "window", "interval", "model", "alpha", "sample", "webhook", "thresholds", "local_model",
        ].map { ($0, Shape.any) })),
        "policies": .list(.mapping([
            "model": .any, "variants": .list(.mapping(["target": .any, "weight": .any])), "sticky": .any,
            "fallback": .any, "first_token_budget": .any, "allow_override": .any,
            "shadow": .mapping(["target": .any, "rate": .any, "max_concurrent": .any]),
            "rollout": .mapping(Dictionary(uniqueKeysWithValues: [
                "target", "steps", "step_seconds", "min_requests", "window_seconds", "check_seconds", "max_acceptance_drop",
                "min_acceptance", "min_feedback", "max_error_rate", "max_p95_latency_ms", "min_eval_win_rate", "webhook",
            ].map { ($0, Shape.any) })),
        ])),
    ])

    /// Keys that hold secrets or name where a secret is read from.
    static let secretKeys: Set<String> = ["webhook_secret", "webhook_secret_env", "key", "key_env", "api_key", "api_key_env"]

    /// Throws for the first unknown key found, naming its path.
    static func check(yaml: String, source: String) throws {
        guard let node = try Yams.compose(yaml: yaml) else { return }
        try check(node, against: schema, path: "", source: source)
    }

    private static func check(_ node: Node, against shape: Shape, path: String, source: String) throws {
        switch (shape, node) {
        case (.any, _):
            return
        case (.mapping(let known), .mapping(let mapping)):
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? "\(keyNode)"
                let here = path.isEmpty ? key : "\(path).\(key)"
                guard let inner = known[key] else {
                    let where_ = path.isEmpty ? "at the top level" : "in \(path)"
                    throw ConfigurationError("\(source): unknown key '\(key)' \(where_) (known: \(known.keys.sorted().joined(separator: ", ")))")
                }
                // A secret key written with no value would read as "not configured" and quietly switch the
                // protection off: say so instead.
                if Self.secretKeys.contains(key), value.null != nil {
                    throw ConfigurationError("\(source): \(here) has no value; give the secret, or remove the key")
                }
                try check(value, against: inner, path: here, source: source)
            }
        case (.mapOf(let inner), .mapping(let mapping)):
            for (keyNode, value) in mapping {
                let key = keyNode.string ?? "\(keyNode)"
                try check(value, against: inner, path: path.isEmpty ? key : "\(path).\(key)", source: source)
            }
        case (.list(let inner), .sequence(let items)):
            for (i, item) in items.enumerated() {
                try check(item, against: inner, path: "\(path)[\(i)]", source: source)
            }
        default:
            return  // wrong kinds are reported by the decoder with their path
        }
    }
}
