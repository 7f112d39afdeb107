import XCTest
@testable import FlywheelChatTemplate

/// Real model templates rendered over several conversations must match Python jinja2 (configured
/// as transformers does) byte for byte; see scripts/engine/make_template_fixtures.py.
final class ChatTemplateTests: XCTestCase {
    func testQwen2ChatMLWithDefaultSystemPromptMatchesJinja() throws { try TemplateFixture.load("chatml_qwen2").verifyAll() }
    func testSmolLM2MatchesJinja() throws { try TemplateFixture.load("chatml_smollm2").verifyAll() }
    func testQwen25IncludingToolsBranchMatchesJinja() throws { try TemplateFixture.load("qwen2_5").verifyAll() }
    func testQwen3ThinkingAndToolsMatchesJinja() throws { try TemplateFixture.load("qwen3").verifyAll() }
    func testLlama2SystemBlockAndRoleAlternationMatchesJinja() throws { try TemplateFixture.load("llama2").verifyAll() }
    func testLlama3MatchesJinja() throws { try TemplateFixture.load("llama3").verifyAll() }
    func testLlama31DateAndToolsMatchesJinja() throws { try TemplateFixture.load("llama3_1").verifyAll() }
    func testMistralV01MatchesJinja() throws { try TemplateFixture.load("mistral_v0_1").verifyAll() }
    func testMistralV02MatchesJinja() throws { try TemplateFixture.load("mistral_v0_2").verifyAll() }
    func testMistralV03ToolsMatchesJinja() throws { try TemplateFixture.load("mistral_v0_3").verifyAll() }
    func testMistralNemoMatchesJinja() throws { try TemplateFixture.load("mistral_nemo").verifyAll() }
    func testGemmaRejectsSystemRoleAndMatchesJinja() throws { try TemplateFixture.load("gemma").verifyAll() }
    func testGemma3MatchesJinja() throws { try TemplateFixture.load("gemma3").verifyAll() }
    func testPhi3MiniMatchesJinja() throws { try TemplateFixture.load("phi3_mini").verifyAll() }
    func testPhi35MatchesJinja() throws { try TemplateFixture.load("phi3_5").verifyAll() }
    func testLlama32VisionStrftimeDateMatchesJinja() throws { try TemplateFixture.load("llama3_2_vision").verifyAll() }
    func testHermes2ProMacrosMatchJinja() throws { try TemplateFixture.load("hermes2_pro").verifyAll() }
    func testDeepSeekR1MatchesJinja() throws { try TemplateFixture.load("deepseek_r1").verifyAll() }
    func testSmolLM3GenerationBlocksMatchJinja() throws { try TemplateFixture.load("smollm3").verifyAll() }

    func testToolsDefaultToNoneAsTransformersPassesThem() throws {
        let template = try ChatTemplate(source: "{{ tools is defined }} {{ tools is none }} {{ documents is none }}")
        let output = try template.render(messages: [], addGenerationPrompt: false, bosToken: "", eosToken: "")
        XCTAssertEqual(output, "True True True")
    }

    func testExtraVariablesOverrideDefaults() throws {
        let template = try ChatTemplate(source: "{{ bos_token }}{{ enable_thinking }}")
        let output = try template.render(
            messages: [], addGenerationPrompt: false, bosToken: "<s>", eosToken: "",
            extra: ["bos_token": "B", "enable_thinking": false])
        XCTAssertEqual(output, "BFalse")
    }

    func testParsedTemplateIsReusableAcrossRenders() throws {
        let template = try ChatTemplate(source: "{% for m in messages %}[{{ m.role }}:{{ m.content }}]{% endfor %}")
        let first = try template.render(messages: [ChatMessage(role: "user", text: "a")], addGenerationPrompt: false,
                                        bosToken: "", eosToken: "")
        let second = try template.render(messages: [ChatMessage(role: "assistant", text: "b")], addGenerationPrompt: false,
                                         bosToken: "", eosToken: "")
        XCTAssertEqual(first, "[user:a]")
        XCTAssertEqual(second, "[assistant:b]")
    }
}
