#!/usr/bin/env python3
"""Generate the chat-template fixtures for Tests/FlywheelChatTemplateTests.

Renders real model chat templates (Tests/FlywheelChatTemplateTests/Fixtures/templates/*.jinja, the
`tokenizer.chat_template` strings those models ship, taken verbatim from public copies: Ollama's
template/index.json and huggingface.js's packages/jinja/test/e2e.test.js) and a set of small
feature templates with Python's jinja2, configured the way transformers' `_compile_jinja_template`
does: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, loopcontrols), `tojson`
as json.dumps(ensure_ascii=False, ...), and the `raise_exception` and `strftime_now` globals
(the clock fixed at NOW so output is deterministic). Render arguments mirror apply_chat_template:
messages, tools (None when absent), documents=None, add_generation_prompt, bos_token, eos_token,
then extra keyword arguments.

Messages are stored in OpenAI wire form (tool-call `arguments` as a JSON string). Before rendering
they are converted the way FlywheelChatTemplate's ChatMessage does: keys role, content, name,
tool_calls, tool_call_id in that order and only when set; text parts as {"type": "text", ...};
arguments parsed when they are a JSON object.

Writes Tests/FlywheelChatTemplateTests/Fixtures/<template>.json (naming its templates/<template>.jinja)
and jinja_features.json (templates inline). Each case
holds either "expected" (the exact output) or "error_kind": "raised" with "error" (the message of
raise_exception), or "error_kind": "other" (any other render error).
Needs `pip install jinja2` only to regenerate. Usage: python3 scripts/engine/make_template_fixtures.py
"""
import json
import os
from datetime import datetime, timezone

import jinja2
import jinja2.ext
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "Tests", "FlywheelChatTemplateTests", "Fixtures")
NOW = 1725537600  # 2024-09-05 12:00:00 UTC


class Raised(Exception):
    pass


class GenerationBlock(jinja2.ext.Extension):
    """transformers' AssistantTracker when not tracking: `{% generation %}` renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def environment():
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.fromtimestamp(NOW, tz=timezone.utc).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = environment()


def render(template, **kwargs):
    """Returns the fixture outcome: expected output or the error kind."""
    try:
        return {"expected": ENV.from_string(template).render(**kwargs)}
    except Raised as e:
        return {"error_kind": "raised", "error": str(e.args[0])}
    except (TemplateError, TypeError, ValueError, AttributeError, KeyError, IndexError) as e:
        return {"error_kind": "other", "python_error": f"{type(e).__name__}: {e}"}


def template_message(wire):
    message = {"role": wire["role"]}
    content = wire.get("content")
    if content is not None:
        if isinstance(content, list):
            message["content"] = [{"type": "text", "text": part["text"]} for part in content]
        else:
            message["content"] = content
    if wire.get("name") is not None:
        message["name"] = wire["name"]
    if wire.get("tool_calls") is not None:
        calls = []
        for call in wire["tool_calls"]:
            arguments = call["function"]["arguments"]
            try:
                parsed = json.loads(arguments)
                if isinstance(parsed, dict):
                    arguments = parsed
            except ValueError:
                pass
            calls.append({"id": call["id"], "type": call.get("type", "function"),
                          "function": {"name": call["function"]["name"], "arguments": arguments}})
        message["tool_calls"] = calls
    if wire.get("tool_call_id") is not None:
        message["tool_call_id"] = wire["tool_call_id"]
    return message


def msg(role, content=None, **extra):
    wire = {"role": role}
    if content is not None:
        wire["content"] = content
    wire.update(extra)
    return wire


SYSTEM = msg("system", "You are a terse assistant.")
CONVERSATIONS = {
    "system_user": [SYSTEM, msg("user", "What is 2+2?")],
    "multi_turn": [SYSTEM, msg("user", "Hi there"), msg("assistant", "Hello! How can I help?"),
                   msg("user", "Tell me a joke.")],
    "no_system": [msg("user", "Hi"), msg("assistant", "  Hello.  "), msg("user", "Bye")],
    "assistant_last": [msg("user", "Ping"), msg("assistant", "Pong")],
    "unicode_and_spaces": [msg("user", "  Caf\u00e9 \U0001F680 \u201cquoted\u201d\n\tand 'single' \"double\"  ")],
    "text_parts": [msg("user", [{"type": "text", "text": "part one"}, {"type": "text", "text": " part two"}])],
    "thinking_history": [msg("user", "Hi"), msg("assistant", "<think>\nThe user greets.\n</think>\n\nHello!"),
                         msg("user", "Again")],
    "bad_role_order": [msg("user", "one"), msg("user", "two")],
    "unknown_role": [msg("user", "one"), msg("narrator", "two")],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city, e.g. \"Paris\".",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
    },
}
TOOL_CALL = {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Z\u00fcrich\", \"unit\": \"celsius\"}"}}
TOOL_CONVERSATIONS = {
    "tools_offered": [SYSTEM, msg("user", "Weather in Zurich?")],
    "tool_call_and_result": [
        SYSTEM, msg("user", "Weather in Zurich?"),
        msg("assistant", None, tool_calls=[TOOL_CALL]),
        msg("tool", "{\"temperature\": 21.5, \"sky\": \"clear\"}", tool_call_id="call12345", name="get_weather"),
    ],
    "tool_call_no_system": [
        msg("user", "Weather in Zurich?"),
        msg("assistant", None, tool_calls=[TOOL_CALL]),
        msg("tool", "21.5", tool_call_id="call12345"),
        msg("assistant", "It is 21.5 degrees."),
        msg("user", "Thanks"),
    ],
    "tool_call_unparsable_arguments": [
        msg("user", "Weather?"),
        msg("assistant", "Let me check.", tool_calls=[{"id": "call67890", "type": "function",
                                                        "function": {"name": "get_weather", "arguments": "not json"}}]),
    ],
}

# name: (origin, tokens, tools supported, extra variants)
TEMPLATES = {
    "chatml_qwen2": ("Qwen/Qwen2-7B-Instruct (ChatML with default system prompt)", ("", "<|im_end|>"), False),
    "chatml_smollm2": ("HuggingFaceTB/SmolLM2-1.7B-Instruct", ("<|im_start|>", "<|im_end|>"), False),
    "qwen2_5": ("Qwen/Qwen2.5-7B-Instruct", ("", "<|im_end|>"), True),
    "qwen3": ("Qwen/Qwen3-0.6B", ("", "<|im_end|>"), True),
    "llama2": ("meta-llama/Llama-2-7b-chat-hf", ("<s>", "</s>"), False),
    "llama3": ("meta-llama/Meta-Llama-3-8B-Instruct", ("<|begin_of_text|>", "<|eot_id|>"), False),
    "llama3_1": ("meta-llama/Llama-3.1-8B-Instruct", ("<|begin_of_text|>", "<|eot_id|>"), True),
    "mistral_v0_1": ("mistralai/Mistral-7B-Instruct-v0.1", ("<s>", "</s>"), False),
    "mistral_v0_2": ("mistralai/Mistral-7B-Instruct-v0.2 / Mixtral-8x7B-Instruct-v0.1", ("<s>", "</s>"), False),
    "mistral_v0_3": ("mistralai/Mistral-7B-Instruct-v0.3 (tool-use template)", ("<s>", "</s>"), True),
    "mistral_nemo": ("mistralai/Mistral-Nemo-Instruct-2407", ("<s>", "</s>"), True),
    "gemma": ("google/gemma-7b-it / gemma-2", ("<bos>", "<eos>"), False),
    "gemma3": ("google/gemma-3-*-it", ("<bos>", "<eos>"), False),
    "phi3_mini": ("microsoft/Phi-3-mini-4k-instruct", ("<s>", "<|endoftext|>"), False),
    "phi3_5": ("microsoft/Phi-3.5-mini-instruct", ("<s>", "<|endoftext|>"), False),
    "llama3_2_vision": ("meta-llama/Llama-3.2-11B-Vision-Instruct", ("<|begin_of_text|>", "<|eot_id|>"), True),
    "hermes2_pro": ("NousResearch/Hermes-2-Pro-Llama-3-8B (tool_use template, macros)", ("<|begin_of_text|>", "<|im_end|>"), True),
    "deepseek_r1": ("deepseek-ai/DeepSeek-R1", ("<\uff5cbegin\u2581of\u2581sentence\uff5c>", "<\uff5cend\u2581of\u2581sentence\uff5c>"), True),
    "smollm3": ("HuggingFaceTB/SmolLM3-3B ({% generation %}, strftime_now)", ("", "<|im_end|>"), True),
}
EXTRA_CASES = {
    "llama3_1": [("tools_offered", {"date_string": "05 Sep 2024"}), ("tools_offered", {"tools_in_user_message": False})],
    "qwen3": [("multi_turn", {"enable_thinking": False})],
    "smollm3": [("multi_turn", {"enable_thinking": False}), ("tools_offered", {"xml_tools": [WEATHER_TOOL]})],
    "deepseek_r1": [("thinking_history", {})],
}


def template_cases(name, template, tokens, tools_supported):
    bos, eos = tokens
    cases = []

    def add(case_name, wire, add_generation_prompt, tools=None, extra=None):
        kwargs = dict(messages=[template_message(m) for m in wire], tools=tools, documents=None,
                      add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
        kwargs.update(extra or {})
        case = {"name": case_name, "messages": wire, "add_generation_prompt": add_generation_prompt,
                "bos_token": bos, "eos_token": eos}
        if tools is not None:
            case["tools"] = tools
        if extra:
            case["extra"] = extra
        case.update(render(template, **kwargs))
        cases.append(case)

    for conversation, wire in CONVERSATIONS.items():
        for agp in (True, False) if conversation in ("multi_turn", "assistant_last") else (True,):
            add(f"{conversation}/agp={agp}", wire, agp)
    if tools_supported:
        for conversation, wire in TOOL_CONVERSATIONS.items():
            add(f"{conversation}/agp=True", wire, True, tools=[WEATHER_TOOL])
    for conversation, extra in EXTRA_CASES.get(name, []):
        wire = TOOL_CONVERSATIONS.get(conversation) or CONVERSATIONS[conversation]
        tools = [WEATHER_TOOL] if conversation in TOOL_CONVERSATIONS else None
        add(f"{conversation}/extra={sorted(extra)}", wire, True, tools=tools, extra=extra)
    return cases


# Small templates that pin down interpreter behaviour against Jinja, each with its variables.
FEATURES = [
    ("whitespace_trim_and_lstrip", "  {% if true %}\n    x\n  {% endif %}\n  y {{- ' z ' -}} \n w\n{# c #}\nq\n", {}),
    ("whitespace_plus_disables", "a\n  {%+ if true +%}\nb\n  {% endif %}\nc", {}),
    ("whitespace_minus_everywhere", "a  \n {%- for i in [1, 2] -%} \n {{ i }} \n {%- endfor -%}\n  b", {}),
    ("whitespace_tabs_comment", "x\n\t{# note #}\n\t{%- set y = 1 %}\ty{{ y }}\n", {}),
    ("variable_tags_not_lstripped", "a\n  {{ 'v' }}\n  {% if true %}w{% endif %}\n", {}),
    ("trailing_newline_dropped", "abc\n\n", {}),
    ("crlf_normalized", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc", {}),
    ("comment_dash_and_trim", "a {#- c -#}   b {# d #}\nc", {}),
    ("loop_variables",
     "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/"
     "{{ loop.first }}/{{ loop.last }}/{{ loop.length }}/{{ loop.previtem }}/{{ loop.nextitem }};{% endfor %}",
     {"xs": ["a", "b", "c"]}),
    ("loop_else_filter_break_continue",
     "{% for x in [] %}no{% else %}empty{% endfor %}|{% for x in xs if x % 2 %}{{ x }}:{{ loop.length }},{% endfor %}|"
     "{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
     {"xs": [1, 2, 3, 4, 5]}),
    ("loop_dict_items_and_unpack",
     "{% for k, v in d.items() %}{{ k }}={{ v }},{% endfor %}|{% for k, v in d|items %}{{ k }}{% endfor %}|"
     "{% for k in d %}{{ k }}{% endfor %}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.get('b') }}|{{ d.get('z', 'dflt') }}",
     {"d": {"b": 1, "a": [2], "c": None}}),
    ("scoping_set_in_loop", "{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}"
     "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("namespace", "{% set ns = namespace(total=0, found=false, name='n') %}{% for i in range(4) %}"
     "{% set ns.total = ns.total + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}"
     "{{ ns.total }} {{ ns.found }} {{ ns.name }} {{ ns.missing is defined }}", {}),
    ("python_reprs", "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ [1, 'a', none, true, 2.5] }}|"
     "{{ {'a': \"it's\", 'b': [1], 'c': 'x\\ny'} }}|{{ 'x' ~ 1 ~ none ~ missing }}|{{ 7 / 2 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|"
     "{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 1e15 }}|{{ 1e16 }}|{{ 1e-5 }}|{{ 0.0001 }}|{{ 123456789.125 }}|{{ 3 * 'ab' }}|"
     "{{ [1] + [2] }}|{{ -3 }}|{{ 10 - 2.5 }}|{{ true + 1 }}|{{ ('a', 'b')|list }}|{{ 1.5e300 * 1 }}", {}),
    ("tojson_options",
     "{{ data | tojson }}|{{ data | tojson(indent=2) }}|{{ data | tojson(sort_keys=true) }}|"
     "{{ data | tojson(separators=(',', ':')) }}|{{ text | tojson }}|{{ text | tojson(ensure_ascii=true) }}|"
     "{{ [] | tojson(indent=4) }}|{{ {'k': {}} | tojson(indent=0) }}|{{ 3.0 | tojson }}|{{ none | tojson }}",
     {"data": {"b": 1, "a": [1.5, True, None, "x"], "c": {}, "d": [], "e": {"n": -0.5}},
      "text": "\u00e9\"\\\n\t\u0001\u2028\U0001F680/"}),
    ("string_methods",
     "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split() }}|{{ s.split(',') }}|{{ 'a,b,,c'.split(',', 1) }}|"
     "{{ s.upper() }}|{{ s.lower() }}|{{ s.title() }}|{{ s.capitalize() }}|{{ s.replace('a', 'A') }}|"
     "{{ s.replace('a', 'A', 1) }}|{{ s.startswith('  he') }}|{{ s.endswith(('x', '  ')) }}|{{ s.strip(' hez') }}|"
     "{{ '<think>a</think>\\n\\nb'.split('</think>')[-1].lstrip('\\n') }}|{{ s.find('wo') }}|{{ s.count('a') }}|"
     "{{ '-'.join(['x', 'y']) }}", {"s": "  hello wORLD-foo's bar, baz  "}),
    ("slicing", "{{ s[::-1] }}|{{ s[1:4] }}|{{ s[-3:] }}|{{ s[:2] }}|{{ xs[1:] }}|{{ xs[::-1] }}|{{ xs[::2] }}|"
     "{{ xs[-2::-1] }}|{{ xs[5:] }}|{{ xs[-1] }}|{{ xs[10] is defined }}|{{ s[0] }}",
     {"s": "h\u00e9llo\U0001F680", "xs": [1, 2, 3, 4]}),
    ("filters_text",
     "{{ s|trim }}|{{ s|length }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}|{{ s|replace('o', '0') }}|"
     "{{ s|reverse }}|{{ 42|string }}|{{ '12'|int + 1 }}|{{ '3.7'|int }}|{{ 'x'|int }}|{{ 'x'|int(7) }}|{{ 2.9|int }}|"
     "{{ '2.5'|float }}|{{ s|list|first }}|{{ s|last }}|{{ -4|abs }}|{{ 'a<b>&\"'|e }}",
     {"s": "  hello-world (it's) [x]  "}),
    ("filters_lists",
     "{{ xs|length }}|{{ xs|first }}|{{ xs|last }}|{{ xs|join(', ') }}|{{ xs|join }}|{{ xs|reverse|list }}|"
     "{{ people|map(attribute='name')|join(',') }}|{{ people|selectattr('admin')|map(attribute='name')|list }}|"
     "{{ people|rejectattr('admin')|list|length }}|{{ people|selectattr('role', 'equalto', 'user')|list|length }}|"
     "{{ people|selectattr('age', 'undefined')|map(attribute='name')|first }}|{{ xs|select('odd')|list }}|"
     "{{ xs|reject('odd')|list }}|{{ [] | first is defined }}|{{ missing|default('d') }}|{{ ''|default('e', true) }}|"
     "{{ ''|default('e') }}|{{ xs|map('string')|join('-') }}|{{ people|map(attribute='age', default=0)|list }}|"
     "{{ names|reject('equalto', 'b')|join(', ') }}|{{ people|join('/', attribute='name') }}",
     {"xs": [1, 2, 3, 4], "names": ["a", "b", "c"],
      "people": [{"name": "ann", "admin": True, "role": "user", "age": 30},
                 {"name": "bob", "admin": False, "role": "user"},
                 {"name": "cy", "admin": False, "role": "bot", "age": 5}]}),
    ("filter_indent", "{{ s|indent }}|{{ s|indent(2, true) }}|{{ s|indent(width='> ', first=true, blank=true) }}",
     {"s": "a\n\nb\nc"}),
    ("tests",
     "{{ x is defined }}{{ missing is undefined }}{{ none is none }}{{ 's' is string }}{{ d is mapping }}"
     "{{ xs is iterable }}{{ 's' is iterable }}{{ 3 is iterable }}{{ 1.5 is number }}{{ true is number }}"
     "{{ xs is sequence }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 3 is integer }}{{ true is integer }}"
     "{{ 1.0 is float }}{{ true is boolean }}{{ 9 is divisibleby 3 }}{{ 3 is odd }}{{ 4 is even }}"
     "{{ 'a' is eq('a') }}{{ 2 is in(xs) }}{{ x is not none }}{{ d is not mapping }}{{ 2 is gt 1 }}{{ 'ab' is lower }}",
     {"x": 1, "xs": [1, 2], "d": {"a": 1}}),
    ("operators_and_logic",
     "{{ 0 or 'x' }}|{{ 'a' and 'b' }}|{{ '' and 'b' }}|{{ 'y' if false }}|{{ 'y' if 1 else 'n' }}|{{ not 0 }}|"
     "{{ 'b' in 'abc' }}|{{ 'z' not in ['a'] }}|{{ 'k' in d }}|{{ 1 == 1.0 }}|{{ 1 < 2 < 3 }}|{{ 'a' < 'b' }}|"
     "{{ [1, 2] == [1, 2] }}|{{ d == {'k': 1} }}|{{ none == false }}|{{ 1 != 2 }}|{{ (1 + 2) * 3 - 4 / 2 }}|"
     "{{ 'a' ~ 'b' + 'c' }}|{{ -x|abs }}|{{ 2 ** 3 ** 2 }}",
     {"d": {"k": 1}, "x": 5}),
    ("undefined_handling",
     "{{ missing }}|{{ missing is defined }}|{{ d.nokey }}|{{ d.nokey is none }}|{{ missing|length }}|"
     "{{ none.x is defined }}|{{ d['nokey'] is undefined }}|{% for i in missing %}x{% endfor %}|{{ missing|trim }}|"
     "{{ d.k.deeper is defined }}|{{ 'x' in missing }}", {"d": {"k": 1}}),
    ("string_literals_and_escapes", "{{ 'a\\tb\\x41\\u00e9\\n' }}|{{ \"d'q\" }}|{{ 'it\\'s' }}|{{ 'con' 'cat' }}|"
     "{{ 'back\\\\slash' }}|{{ '\\q' }}|{{ 'line\nbreak' }}", {}),
    ("macro_and_set_block",
     "{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}"
     "{% set block %}  a {{ 1 }} {% endset %}[{{ block }}]{% raw %}{{ not parsed }}{% endraw %}", {}),
    ("dict_and_list_literals", "{% set d = {'a': 1, 'b': [true, none], 'c': {'d': 'e'}} %}{{ d }}|{{ d.c.d }}|{{ d['b'][0] }}|"
     "{{ [1, [2, [3]]][1][1][0] }}|{{ {} }}|{{ [] }}|{{ dict(x=1) }}|{{ range(2, 8, 3)|list }}", {}),
    ("unicode_lengths", "{{ s|length }}|{{ s[-1] }}|{{ 'stra\u00dfe'.upper() }}|{{ s|upper }}", {"s": "h\u00e9llo\U0001F680"}),
    ("whitespace_after_variable_then_block", "{{ a }}  {% if true %}x{% endif %}\n{{ a -}}\n   {% if true %}y{% endif %}", {"a": 1}),
    ("whitespace_comment_then_indented_block", "{# c #}\n   {% if true %}x{% endif %}\n  {#- d #}\n  {%- if true %}\nz{% endif %}", {}),
    ("whitespace_template_starts_indented", "   {% if true %}\n  a\n   {% endif %}\n", {}),
    ("whitespace_block_mid_line", "a {% if true %}b{% endif %} c\n  d {% for i in [1] %}\n{{ i }}\n{% endfor %}\n", {}),
    ("whitespace_multiline_tag", "{%\n  if true\n%}\nx{%\n endif -%}\n\n  y", {}),
    ("whitespace_unicode_spaces", "a\u00a0\u3000{%- if true %}b{% endif %}", {}),
    ("nested_loops_outer_loop", "{% for a in xs %}{% set outer = loop %}{% for b in xs %}{{ outer.index }}{{ loop.index }} "
     "{% endfor %}{% endfor %}", {"xs": [1, 2]}),
    ("keyword_argument_order", "{{ dict(b=1, a=2) }}|{{ dict(b=1, a=2)|tojson }}|{% set ns = namespace(z=1, y=2) %}{{ ns.z }}{{ ns.y }}", {}),
    ("messages_like_access", "{% for m in messages_ %}{{ m['content'][0]['text'] if m.content is not string else m.content }}"
     "{{ m.get('name', '-') }};{% endfor %}{{ messages_|selectattr('role', 'equalto', 'user')|list|length }}"
     "{{ messages_[0] == messages_[-1] }}{{ messages_[0] == messages_[0] }}",
     {"messages_": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}, {"role": "assistant", "content": "yo", "name": "bot"}]}),
    ("tojson_filter_chain", "{{ x|tojson|safe }}|{{ (x|tojson)[1:-1] }}|{{ x.a|tojson(indent='\t') }}", {"x": {"a": [1, {"b": None}]}}),
    ("strftime_now", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%A %B %j %H:%M:%S %y %m %e %I%p %%') }}", {}),
    ("raise_exception", "{% if x > 1 %}{{ raise_exception('x too big: ' ~ x) }}{% endif %}ok", {"x": 2}),
    ("undefined_attribute_error", "{{ missing.attr }}", {}),
    ("type_error", "{{ 1 + 'a' }}", {}),
    ("none_not_iterable", "{% for x in none %}{% endfor %}", {}),
]


def feature_cases():
    cases = []
    for name, template, context in FEATURES:
        kwargs = dict(messages=[], tools=None, documents=None, add_generation_prompt=False, bos_token="", eos_token="")
        kwargs.update(context)
        case = {"name": name, "template": template, "context": context}
        case.update(render(template, **kwargs))
        cases.append(case)
    return cases


def write(name, payload):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (origin, tokens, tools_supported) in TEMPLATES.items():
        with open(os.path.join(OUT, "templates", f"{name}.jinja"), encoding="utf-8") as f:
            template = f.read()
        cases = template_cases(name, template, tokens, tools_supported)
        write(f"{name}.json", {"name": name, "origin": origin, "now": NOW, "template_file": f"templates/{name}.jinja",
                              "cases": cases})
    write("jinja_features.json", {"now": NOW, "cases": feature_cases()})


if __name__ == "__main__":
    main()
