import XCTest
@testable import FlywheelConfig

final class ConfigurationTests: XCTestCase {
    func testFullExampleFileParses() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../config/flywheel.example.yaml").path
        // Only the key `scripts/serve --config config/flywheel.example.yaml` is documented to need.
        let c = try GatewayConfiguration.load(path: path, environment: ["OPENAI_API_KEY": "sk-test"])
        XCTAssertFalse(c.upstreams.isEmpty)
        XCTAssertFalse(c.routes.isEmpty)
        XCTAssertEqual(c.upstreams.first?.apiKey, "sk-test")
    }

    func testEnvironmentReferencesResolve() throws {
        let c = try GatewayConfiguration.parse(yaml: """
        auth: {keys: [{id: team-a, key_env: TEAM_A}]}
        feedback: {webhook_secret_env: HOOK}
        upstreams: [{name: u, base_url: "https://example.invalid/v1", api_key_env: UP}]
        routes: [{model: "*", upstream: u}]
        """, environment: ["TEAM_A": "sk-a", "HOOK": "h", "UP": "sk-up"])
        XCTAssertEqual(c.auth.keys, [.init(id: "team-a", key: "sk-a")])
        XCTAssertEqual(c.feedback.webhookSecret, "h")
        XCTAssertEqual(c.upstreams.first?.apiKey, "sk-up")
    }

    func testMissingEnvironmentVariableIsAClearError() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", api_key_env: NOPE}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("NOPE"), "\(error)")
        }
    }

    func testRouteToUnknownUpstreamIsRejected() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1"}]
        routes: [{model: m, upstreams: [v]}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("unknown upstream 'v'"), "\(error)")
        }
    }

    func testWrongTypeNamesThePath() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {max_connections: lots}")) { error in
            XCTAssertTrue("\(error)".contains("server.max_connections"), "\(error)")
        }
    }

    func testBadListenAddressAndURLAreRejected() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {listen: nowhere}"))
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "upstreams: [{name: u, base_url: \"ftp://x\"}]"))
        XCTAssertEqual(try ListenAddress(parsing: "[::1]:8080"), try ListenAddress(parsing: "[::1]:8080"))
        XCTAssertEqual(try ListenAddress(parsing: ":9000").host, "0.0.0.0")
        XCTAssertThrowsError(try ListenAddress(parsing: "127.0.0.1:99999"))
    }

    func testTheUpstreamIdleTimeoutParsesDefaultsAndIsChecked() throws {
        let c = try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", api_key: k, timeouts: {idle: 2.5}}, {name: v, base_url: "http://y/v1", api_key: k}]
        """)
        XCTAssertEqual(c.upstreams.map(\.idleTimeout), [2.5, 300])
        XCTAssertEqual(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", api_key: k, timeouts: {idle: 0}}]
        """).upstreams.first?.idleTimeout, 0)
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", api_key: k, timeouts: {idle: -1}}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("upstreams.u.timeouts.idle"), "\(error)")
        }
    }

    func testUnknownKeysAreRejectedWithTheirPath() {
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server: {shutdown_grase: 5}")) { error in
            XCTAssertTrue("\(error)".contains("unknown key 'shutdown_grase' in server"), "\(error)")
        }
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", timeouts: {conect: 1}}]
        """)) { error in
            XCTAssertTrue("\(error)".contains("upstreams[0].timeouts"), "\(error)")
        }
        XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "routs: []")) { error in
            XCTAssertTrue("\(error)".contains("at the top level"), "\(error)")
        }
        XCTAssertNoThrow(try GatewayConfiguration.parse(yaml: """
        upstreams: [{name: u, base_url: "http://x/v1", headers: {OpenAI-Organization: org-1}}]
        prices: {some-model: {input: 1, output: 2}}
        """))
    }

    func testLocalModelsAndInferenceParse() throws {
        let c = try GatewayConfiguration.parse(yaml: """
        local_models:
          - {name: bot, path: /m/bot.gguf, context_length: 2048, chat_template: "{{ messages }}"}
        inference: {threads: 3, slots: 4, max_queued: 5, prompt_chunk: 64, prompt_chunk_while_decoding: 8, max_tokens_limit: 512, kv_cache_mb: 256}
        """)
        XCTAssertEqual(c.localModels, [.init(name: "bot", path: "/m/bot.gguf", contextLength: 2048, chatTemplate: "{{ messages }}")])
        XCTAssertEqual(c.inference.threads, 3)
        XCTAssertEqual(c.inference.slots, 4)
        XCTAssertEqual(c.inference.maxQueued, 5)
        XCTAssertEqual(c.inference.promptChunk, 64)
        XCTAssertEqual(c.inference.promptChunkWhileDecoding, 8)
        XCTAssertEqual(try GatewayConfiguration.parse(yaml: "inference: {prompt_chunk: 16}").inference.promptChunkWhileDecoding, 16,
                       "the default never exceeds prompt_chunk")
        XCTAssertEqual(c.inference.maxTokensLimit, 512)
        XCTAssertEqual(c.inference.kvCacheMB, 256)
        XCTAssertNil(try GatewayConfiguration.parse(yaml: "inference: {slots: 2}").inference.kvCacheMB, "no budget by default")
    }

    func testLocalModelMistakesAreNamed() {
        let cases: [(String, String)] = [
            ("local_models: [{name: a, path: x}, {name: a, path: y}]", "duplicate name 'a'"),
            ("local_models: [{name: a, path: x, context_length: 4}]", "context_length"),
            ("local_models: [{name: a, path: x, chat_template: t, chat_template_file: f}]", "not both"),
            ("local_models: [{name: a, path: x, chat_template_file: /nonexistent/t.jinja}]", "/nonexistent/t.jinja"),
            ("local_models: [{name: a, path: x, chat_templat: t}]", "unknown key 'chat_templat'"),
            ("inference: {slots: 0}", "inference.slots"),
            ("inference: {kv_cache_mb: 0}", "inference.kv_cache_mb"),
            ("inference: {prompt_chunk: 16, prompt_chunk_while_decoding: 32}", "inference.prompt_chunk_while_decoding"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: yaml), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }

    func testLogDurabilityAndSizeCapParseAndAreChecked() throws {
        let c = try GatewayConfiguration.parse(yaml: "log: {feedback_durability: normal, max_size_mb: 512}")
        XCTAssertEqual(c.log.feedbackDurability, "normal")
        XCTAssertEqual(c.log.maxSizeMB, 512)
        let defaults = try GatewayConfiguration.parse(yaml: "log: {path: x.db}")
        XCTAssertEqual(defaults.log.feedbackDurability, "full", "acknowledged feedback survives power loss by default")
        XCTAssertNil(defaults.log.maxSizeMB)
        for (yaml, expected) in [("log: {feedback_durability: sometimes}", "log.feedback_durability"),
                                 ("log: {max_size_mb: 0}", "log.max_size_mb"),
                                 ("log: {max_size_mb: -5}", "log.max_size_mb")] {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: yaml), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }

    func testLocalModelFlagParsesNameAndPath() throws {
        XCTAssertEqual(try GatewayConfiguration.LocalModelSettings(flag: "bot=/m/a=b.gguf"), .init(name: "bot", path: "/m/a=b.gguf"))
        XCTAssertThrowsError(try GatewayConfiguration.LocalModelSettings(flag: "bot"))
        XCTAssertThrowsError(try GatewayConfiguration.LocalModelSettings(flag: "=x.gguf"))
        XCTAssertThrowsError(try GatewayConfiguration.LocalModelSettings(flag: "bot="))
    }

    func testLocalModelOverrideReplacesTheConfiguredOneOfTheSameName() throws {
        var c = try GatewayConfiguration.parse(yaml: "local_models: [{name: bot, path: old.gguf, context_length: 64}]")
        c.applyOverrides(listen: nil, database: nil, upstreamURL: nil, upstreamKey: nil,
                         localModels: [.init(name: "bot", path: "new.gguf"), .init(name: "two", path: "two.gguf")], threads: 1)
        XCTAssertEqual(c.localModels.map(\.path), ["new.gguf", "two.gguf"])
        XCTAssertEqual(c.inference.threads, 1)
    }

    func testSecretsThatWouldQuietlySwitchProtectionOffAreRefused() {
        let cases: [(String, [String: String], String)] = [
            ("feedback: {webhook_secret: \"\"}", [:], "empty"),
            ("feedback: {webhook_secret: \"   \"}", [:], "empty"),
            ("feedback:\n  webhook_secret:\n", [:], "no value"),
            ("feedback: {webhook_secret: s, webhook_secret_env: X}", ["X": "t"], "not both"),
            ("feedback: {webhook_secret_env: EMPTY}", ["EMPTY": ""], "is empty"),
            ("feedback: {webhook_secret_env: UNSET}", [:], "is not set"),
            ("feedback: {webhook_secret: s, signature_tolerance: 1e999}", [:], "signature_tolerance"),
            ("feedback: {webhook_secret: s, signature_tolerance: 0}", [:], "signature_tolerance"),
            ("feedback: {wait_timeout: 0}", [:], "wait_timeout"),
            ("auth:\n  keys:\n    - {id: a, key: }\n", [:], "no value"),
            ("auth: {admin_key: short}", [:], "at least 16"),
            ("auth: {admin_key: \"\"}", [:], "at least 16"),
            ("auth: {admin_key_env: UNSET}", [:], "is not set"),
            ("auth: {metrics_require_admin: true}", [:], "needs auth.admin_key"),
            ("auth: {admin_key: same-key-0123456789, keys: [{id: a, key: same-key-0123456789}]}", [:], "cannot be the admin key"),
            ("auth: {allow_opn: true}", [:], "unknown key"),
        ]
        for (yaml, environment, needle) in cases {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: yaml, environment: environment), yaml) { error in
                XCTAssertTrue("\(error)".contains(needle), "\(yaml): \(error)")
            }
        }
        XCTAssertEqual(try GatewayConfiguration.parse(yaml: "feedback: {webhook_secret: s, signature_tolerance: 60}").feedback.signatureTolerance, 60)
        // A syntax error names the line and column but never quotes the line (it may hold a secret).
        for yaml in ["auth:\n  admin_key: secret-admin-0123456789: x\n", "auth:\n  admin_key: [secret-admin-0123456789\n"] {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: yaml)) { error in
                XCTAssertFalse("\(error)".contains("secret-admin"), "\(error)")
                XCTAssertTrue("\(error)".contains("2:") || "\(error)".contains("3:"), "\(error)")
            }
        }
        let auth = try? GatewayConfiguration.parse(yaml: "auth: {admin_key_env: A, metrics_require_admin: true, allow_open: true}",
                                                   environment: ["A": "admin-0123456789abcdef"]).auth
        XCTAssertEqual(auth?.adminKey, "admin-0123456789abcdef")
        XCTAssertEqual(auth?.metricsRequireAdmin, true)
        XCTAssertEqual(auth?.allowOpen, true)
    }
}

final class PolicyConfigurationTests: XCTestCase {
    let base = """
    upstreams: [{name: u, base_url: "http://x/v1"}]
    routes: [{model: "gpt-*", upstream: u}]
    local_models: [{name: ticket-router, path: /m.gguf}]

    """

    func testAPolicyParsesWithItsDefaults() throws {
        let c = try GatewayConfiguration.parse(yaml: base + """
        policies:
          - model: support-bot
            variants: [{target: ticket-router, weight: 10}, {target: gpt-4o-mini, weight: 90}]
            fallback: [gpt-4o-mini]
            first_token_budget: 1.5
            shadow: {target: ticket-router, rate: 0.2}
          - model: other
            variants: [{target: gpt-4o}]
            sticky: none
        """)
        let p = try XCTUnwrap(c.policies.first)
        XCTAssertEqual(p.variants, [.init(target: "ticket-router", weight: 10), .init(target: "gpt-4o-mini", weight: 90)])
        XCTAssertEqual(p.sticky, [.user, .episode])
        XCTAssertEqual(p.firstTokenBudget, 1.5)
        XCTAssertEqual(p.shadow, .init(target: "ticket-router", rate: 0.2, maxConcurrent: 2))
        XCTAssertEqual(p.targets, ["ticket-router", "gpt-4o-mini"])
        XCTAssertEqual(c.policies[1].sticky, [])
        XCTAssertEqual(c.policies[1].variants.first?.weight, 1)
        XCTAssertNoThrow(try c.checkPolicyTargets())
    }

    func testBadPoliciesAreRefusedNamingTheProblem() {
        let cases: [(String, String)] = [
            ("- {model: m, variants: []}", "at least one variant"),
            ("- {model: m, variants: [{target: gpt-4o, weight: -1}]}", "weight"),
            ("- {model: m, variants: [{target: gpt-4o, weight: 0}]}", "above 0"),
            ("- {model: m, variants: [{target: gpt-4o}, {target: gpt-4o}]}", "listed twice"),
            ("- {model: m, variants: [{target: \"bad name\\r\\n\"}]}", "must be 1 to 128 characters"),
            ("- {model: m, variants: [{target: gpt-4o}], sticky: [user, ip]}", "'ip' is not one of"),
            ("- {model: m, variants: [{target: gpt-4o}], first_token_budget: 0}", "first_token_budget"),
            ("- {model: m, variants: [{target: gpt-4o}], shadow: {target: gpt-4o, rate: 2}}", "shadow.rate"),
            ("- {model: m, variants: [{target: gpt-4o}]}\n- {model: m, variants: [{target: gpt-4o}]}", "two policies"),
            ("- {model: m, variants: [{target: gpt-4o, wieght: 1}]}", "wieght"),
            ("- {model: m, variants: [{target: gpt-4o, weight: 1e308}, {target: gpt-4o-mini, weight: 1e308}]}", "too large"),
            ("- {model: m, variants: [{target: gpt-4o}], fallback: [gpt-4o-mini, gpt-4o-mini]}", "listed twice"),
            ("- {model: m, variants: [{target: gpt-4o}], sticky: [user, none]}", "'none' stands alone"),
            ("- {model: m, variants: [{target: gpt-4o}], rollout: {steps: [50, 20]}}", "two variants"),
            ("- {model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {steps: [50, 20]}}", "rising"),
            ("- {model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {target: x}}", "not one of its variants"),
            ("- {model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {webhook: ftp://x}}", "webhook"),
            ("- {model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {min_acceptance: 1.5}}", "rollout.min_acceptance must be 0...1"),
        ]
        for (yaml, expected) in cases {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: base + "policies:\n" + yaml), yaml) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
    }

    func testARolloutsAcceptanceFloorIsReadAndOffByDefault() throws {
        let floored = try GatewayConfiguration.parse(yaml: base + "policies: [{model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {min_acceptance: 0.85}}]")
        XCTAssertEqual(floored.policies.first?.rollout?.minAcceptance, 0.85)
        let plain = try GatewayConfiguration.parse(yaml: base + "policies: [{model: m, variants: [{target: gpt-4o}, {target: gpt-4o-mini}], rollout: {}}]")
        XCTAssertNil(plain.policies.first?.rollout?.minAcceptance)
    }

    func testATargetThatIsNeitherLocalNorRoutedIsRefused() throws {
        let c = try GatewayConfiguration.parse(yaml: base + "policies: [{model: m, variants: [{target: claude-3}]}]")
        XCTAssertThrowsError(try c.checkPolicyTargets()) { error in
            XCTAssertTrue("\(error)".contains("'claude-3' is neither a local model nor routed"), "\(error)")
        }
    }

    func testServerTLSParsesAndItsShapesAreChecked() throws {
        let c = try GatewayConfiguration.parse(yaml: """
        server:
          tls: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem, client_auth: require, handshake_timeout: 3}
        """)
        var expected = GatewayConfiguration.TLS(certFile: "/c.pem", keyFile: "/k.pem")
        expected.clientCAFile = "/ca.pem"
        expected.clientAuth = .require
        expected.handshakeTimeout = 3
        XCTAssertEqual(c.server.tls, expected)
        XCTAssertNil(try GatewayConfiguration.parse(yaml: "server: {listen: 127.0.0.1:0}").server.tls)
        let refused: [(String, String)] = [
            ("tls: {cert_file: /c.pem}", "server.tls needs cert_file and key_file"),
            ("tls: {cert_file: /c.pem, key_file: /k.pem, client_auth: maybe}", "client_auth must be none, optional or require"),
            ("tls: {cert_file: /c.pem, key_file: /k.pem, client_auth: optional}", "client_auth optional needs client_ca_file"),
            ("tls: {cert_file: /c.pem, key_file: /k.pem, client_ca_file: /ca.pem}", "client_ca_file is set but client_auth is none"),
            ("tls: {cert_file: /c.pem, key_file: /k.pem, handshake_timeout: 0}", "handshake_timeout must be more than 0"),
            ("tls: {cert_file: /c.pem, key_file: /k.pem, certfile: /x}", "unknown key 'certfile' in server.tls"),
        ]
        for (yaml, message) in refused {
            XCTAssertThrowsError(try GatewayConfiguration.parse(yaml: "server:\n  " + yaml)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(yaml): \(error)")
            }
        }
    }
}
