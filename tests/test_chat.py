"""Chat templates: real models' templates render byte for byte as their format prescribes.

The expected prompts below are written out by hand from each template's documented turn
format (not captured from our output). The templates are in tests/data/templates/.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from ggufref import arch
from ggufref.chat.template import (
    FALLBACKS,
    ChatTemplate,
    begins_with_bos,
    fallback_family,
    normalize_messages,
    strip_leading_bos,
)
from ggufref.errors import TemplateError

TEMPLATES = Path(__file__).parent / "data" / "templates"

CALC_SCHEMA = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
        },
    },
}
# json.dumps(CALC_SCHEMA) with Python's default separators ", " and ": ", written by hand.
CALC_JSON = (
    '{"type": "function", "function": {"name": "calculator", "description": "Evaluate '
    'arithmetic.", "parameters": {"type": "object", "properties": {"expression": {"type": '
    '"string"}}, "required": ["expression"]}}}'
)
# The same with indent=4: json then separates items with "," (no space) and keys with ": ".
CALC_JSON_INDENT4 = """{
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate arithmetic.",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string"
                }
            },
            "required": [
                "expression"
            ]
        }
    }
}"""

TOOL_TURN = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 6*7?"},
    {
        "role": "assistant",
        "content": None,  # OpenAI sends None for a turn that only calls tools
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "name": "calculator", "content": "42"},
]


def load(name: str, bos: str = "", eos: str = "", **kw) -> ChatTemplate:
    return ChatTemplate((TEMPLATES / name).read_text(encoding="utf-8"), bos, eos, name, **kw)


# --- Gemma 3 ---------------------------------------------------------------------------


def test_gemma3_system_is_prepended_to_first_user_turn():
    t = load("gemma3.jinja", "<bos>", "<eos>")
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "  Hi \n"},  # the template trims turn content
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    expected = (
        "<bos><start_of_turn>user\nYou are terse.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert t.render(messages) == expected
    no_prompt = t.render(messages, add_generation_prompt=False)
    assert no_prompt == expected.removesuffix("<start_of_turn>model\n")


def test_gemma3_raise_exception_becomes_template_error():
    t = load("gemma3.jinja", "<bos>", "<eos>")
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(TemplateError, match="roles must alternate"):
        t.render(bad)


# --- Qwen3 ------------------------------------------------------------------------------


def test_qwen3_system_and_thinking_disabled():
    t = load("qwen3.jinja", "", "<|im_end|>")
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}]
    expected = (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert t.render(messages) == expected
    assert t.render(messages, enable_thinking=False) == expected + "<think>\n\n</think>\n\n"


def test_qwen3_tool_call_conversation():
    t = load("qwen3.jinja", "", "<|im_end|>")
    expected = (
        "<|im_start|>system\nYou are terse.\n\n# Tools\n\n"
        "You may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n"
        "<tools>\n" + CALC_JSON + "\n</tools>\n\n"
        "For each function call, return a json object with function name and arguments "
        "within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\nWhat is 6*7?<|im_end|>\n"
        # empty content: no newline before the first <tool_call>; arguments as a JSON object
        "<|im_start|>assistant\n"
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
        "<|im_end|>\n"
        # tool results travel in a user turn
        "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert t.render(TOOL_TURN, tools=[CALC_SCHEMA]) == expected


def test_qwen3_drops_reasoning_of_earlier_turns():
    t = load("qwen3.jinja", "", "<|im_end|>")
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nGreet back.\n</think>\n\nHello!"},
        {"role": "user", "content": "Bye"},
    ]
    expected = (
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert t.render(messages) == expected


# --- Llama 3.2 ----------------------------------------------------------------------------


def test_llama32_tools_in_first_user_message_and_tool_round_trip():
    fixed = dt.datetime(2026, 11, 26, 12, 0)
    t = load("llama3.2.jinja", "<|begin_of_text|>", "<|eot_id|>", now=lambda: fixed)
    expected = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Environment: ipython\n"
        "Cutting Knowledge Date: December 2023\n"
        "Today Date: 26 Nov 2026\n\n"  # strftime_now("%d %b %Y")
        "You are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n"
        "Given the following functions, please respond with a JSON for a function call "
        "with its proper arguments that best answers the given prompt.\n\n"
        'Respond in the format {"name": function name, "parameters": dictionary of argument '
        "name and its value}.Do not use variables.\n\n" + CALC_JSON_INDENT4 + "\n\n"
        "What is 6*7?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "calculator", "parameters": {"expression": "6*7"}}<|eot_id|>'
        # a str is "iterable" to Jinja, so this template JSON-quotes string tool results
        '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert t.render(TOOL_TURN, tools=[CALC_SCHEMA]) == expected
    assert t.begins_with_bos(expected)


def test_llama32_date_string_override_and_no_tools():
    t = load("llama3.2.jinja", "<|begin_of_text|>", "<|eot_id|>")
    out = t.render([{"role": "user", "content": "Hi"}], date_string="01 Jan 2025")
    assert out == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 01 Jan 2025\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# --- ChatML -------------------------------------------------------------------------------


def test_chatml_plain_conversation():
    t = load("chatml.jinja", "", "<|im_end|>")
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    assert t.render(messages) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
    )
    assert t.stop_strings() == ["<|im_end|>"]


# --- environment details ------------------------------------------------------------------


def test_tojson_matches_transformers():
    t = ChatTemplate(
        "{{ x|tojson }}|{{ x|tojson(indent=2) }}|{{ y|tojson(sort_keys=true) }}"
        "|{{ y|tojson(separators=[',', ':']) }}"
    )
    out = t.render([], x={"a": "<b>&'é"}, y={"b": 1, "a": [1, 2]})
    # no HTML escaping, no \\u escapes, Python's default separators
    assert out == (
        '{"a": "<b>&\'é"}|{\n  "a": "<b>&\'é"\n}|{"a": [1, 2], "b": 1}|{"b":1,"a":[1,2]}'
    )


def test_normalize_messages():
    msgs = normalize_messages(TOOL_TURN + [{"role": "assistant", "content": "x", "tool_calls": []}])
    assert msgs[2]["content"] == ""
    assert msgs[2]["tool_calls"][0]["function"]["arguments"] == {"expression": "6*7"}
    assert "tool_calls" not in msgs[4]  # an empty list would trip Llama's `'tool_calls' in m`
    assert "tool_calls" not in msgs[1]  # nothing added that the caller did not give
    assert TOOL_TURN[2]["content"] is None  # the caller's messages are not modified
    with pytest.raises(TemplateError, match="role"):
        normalize_messages([{"content": "no role"}])


def test_bos_helpers():
    assert begins_with_bos("<bos><start_of_turn>", "<bos>")
    assert not begins_with_bos("<start_of_turn>", "<bos>")
    assert not begins_with_bos("anything", "")
    assert strip_leading_bos("<bos><bos>x", "<bos>") == "<bos>x"
    assert strip_leading_bos("x", "<bos>") == "x"


# --- choosing a template ------------------------------------------------------------------

TOKENS = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]


def test_for_model_prefers_the_gguf_template_and_its_variants():
    meta = {
        "tokenizer.chat_template": "A{{ bos_token }}",
        "tokenizer.chat_template.tool_use": "B{{ eos_token }}",
        "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.bos_token_id": 2,
        "tokenizer.ggml.eos_token_id": 1,
    }
    assert ChatTemplate.for_model(meta, "gemma3").render([]) == "A<bos>"
    assert ChatTemplate.for_model(meta, "gemma3", variant="tool_use").render([]) == "B<eos>"
    with pytest.raises(TemplateError, match="rag"):
        ChatTemplate.for_model(meta, "gemma3", variant="rag")


def test_for_model_falls_back_by_architecture():
    meta = {"tokenizer.ggml.tokens": TOKENS, "tokenizer.ggml.bos_token_id": 2}
    t = ChatTemplate.for_model(meta, "gemma3")
    assert t.name == "builtin:gemma"
    assert t.render([{"role": "user", "content": "Hi"}]) == (
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    )
    assert "<end_of_turn>" in t.stop_strings() and "<eos>" in t.stop_strings()
    assert fallback_family("qwen3") == "chatml"
    assert fallback_family("llama", {"tokenizer.ggml.tokens": ["<|start_header_id|>"]}) == "llama3"
    assert fallback_family("llama", {"tokenizer.ggml.tokens": ["<s>", "</s>"]}) == "chatml"


# The architecture -> family map chat kept before the family became a field of ggufref.arch.
FAMILY_BEFORE = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3": "gemma",
    "gemma3n": "gemma",
    "qwen2": "chatml",
    "qwen2moe": "chatml",
    "qwen3": "chatml",
    "qwen3moe": "chatml",
    "mistral": "chatml",
    "llama": "llama3",  # no tokens in the metadata: Llama 3's template
    "phi3": "chatml",  # unknown to the table
}


@pytest.mark.parametrize("name", sorted(FAMILY_BEFORE))
def test_fallback_family_reads_the_architecture_table(name):
    assert fallback_family(name) == FAMILY_BEFORE[name]
    assert arch.template_family(name) == (None if name == "phi3" else FAMILY_BEFORE[name])


def test_every_template_family_in_the_table_is_built_in():
    families = {a.template for a in arch.ARCHITECTURES.values()}
    families |= set(arch.TEMPLATE_ALIASES.values())
    assert families <= set(FALLBACKS)
    assert not set(arch.TEMPLATE_ALIASES) & set(arch.ARCHITECTURES)  # an alias never hides a row


def test_builtin_gemma_tools_and_python_calls():
    t = ChatTemplate.builtin("gemma")
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "6*7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "calculator", "arguments": {"expression": "6*7"}}},
                {"function": {"name": "f", "arguments": {"b": True, "a": None, "c": 1.5}}},
            ],
        },
        {"role": "tool", "name": "calculator", "content": "42"},
        {"role": "tool", "name": "f", "content": "ok"},
    ]
    out = t.render(messages, tools=[CALC_SCHEMA])
    assert out.startswith("<bos><start_of_turn>user\nBe brief.\n\nYou can call these functions:\n")
    assert CALC_JSON in out
    assert out.endswith(
        "6*7?<end_of_turn>\n"
        '<start_of_turn>model\n[calculator(expression="6*7"), f(a=None, b=True, c=1.5)]'
        "<end_of_turn>\n"
        '<start_of_turn>user\n<tool_response name="calculator">42</tool_response>\n'
        '<tool_response name="f">ok</tool_response><end_of_turn>\n'
        "<start_of_turn>model\n"
    )


def test_builtin_chatml_and_llama3_tool_turns():
    chatml = ChatTemplate.builtin("chatml").render(TOOL_TURN, enable_thinking=False)
    assert chatml == (
        "<|im_start|>system\nYou are terse.<|im_end|>\n"
        "<|im_start|>user\nWhat is 6*7?<|im_end|>\n"
        '<|im_start|>assistant\n<tool_call>\n{"name": "calculator", "arguments": '
        '{"expression": "6*7"}}\n</tool_call><|im_end|>\n'
        "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    llama = ChatTemplate.builtin("llama3").render(TOOL_TURN)
    assert llama == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 6*7?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "calculator", "parameters": {"expression": "6*7"}}<|eot_id|>'
        "<|start_header_id|>ipython<|end_header_id|>\n\n42<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# --- security -----------------------------------------------------------------------------

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ self._TemplateReference__context }}",
    "{{ messages.__class__ }}",
    "{{ messages['__class__'] }}",
    "{{ ''.format.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escape_is_a_template_error(payload):
    with pytest.raises(TemplateError, match="sandbox"):
        ChatTemplate(payload).render([{"role": "user", "content": "x"}])


def test_sandbox_escape_runs_nothing(tmp_path):
    canary = tmp_path / "pwned"
    payloads = [
        "{{ cycler.__init__.__globals__.os.system('touch " + str(canary) + "') }}",
        "{{ self.__init__.__globals__['__builtins__']['open']('" + str(canary) + "', 'w') }}",
        "{{ joiner.__init__.__globals__.os.popen('touch " + str(canary) + "').read() }}",
    ]
    for payload in payloads:
        with pytest.raises(TemplateError):
            ChatTemplate(payload).render([])
    assert not canary.exists()


SIZE_BOMBS = [
    "{% for i in range(10**9) %}x{% endfor %}",
    "{{ 'x' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    # exponential growth: 2**60 characters if nothing stopped it (namespace outlives the loop)
    "{% set ns = namespace(x='a') %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}"
    "{% endfor %}",
    "{% set ns = namespace(x='a') %}{% for i in range(60) %}{% set ns.x = ns.x + ns.x %}"
    "{% endfor %}",
    "{% set ns = namespace(x='a') %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x]|join %}"
    "{% endfor %}",
    "{% set ns = namespace(x='a') %}{% for i in range(60) %}"
    "{% set ns.x = '{}{}'.format(ns.x, ns.x) %}{% endfor %}",
    "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}"
    "{% endfor %}{{ ns.x }}",
    "{{ '%999999999d' % 1 }}",
    "{{ 'a'|center(999999999) }}",
    "{{ ('a' * 100000).replace('', 'b' * 100000) }}",
    "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",  # 10 MB of output
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
]


@pytest.mark.parametrize("payload", SIZE_BOMBS)
def test_size_bombs_fail_fast(payload):
    start = time.perf_counter()
    with pytest.raises(TemplateError):
        ChatTemplate(payload).render([])
    assert time.perf_counter() - start < 2.0


def test_runaway_loop_is_stopped_by_the_deadline():
    # 10**10 empty iterations: each range is within the sandbox cap, so only time stops it
    t = ChatTemplate(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        timeout=0.5,
    )
    start = time.perf_counter()
    with pytest.raises(TemplateError, match="gave up"):
        t.render([])
    assert time.perf_counter() - start < 2.0
    time.sleep(0.1)
    alive = [th for th in threading.enumerate() if th.name == "chat-template"]
    assert not alive  # the worker was really stopped, not just abandoned


def test_syntax_error_is_a_template_error():
    with pytest.raises(TemplateError, match="syntax error"):
        ChatTemplate("{% for %}")


# --- differential: our bounded sandbox vs. the stock transformers environment -------------


def stock_hf_render(source: str, **context) -> str:
    """Render as transformers' apply_chat_template does, with stock jinja2 (the oracle)."""
    import json

    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: dt.datetime(2026, 11, 26).strftime(fmt)
    return env.from_string(source).render(**context)


CONVERSATIONS = {
    "plain": (
        [
            {"role": "system", "content": "Sys."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Bye"},
        ],
        None,
    ),
    "tools": (normalize_messages(TOOL_TURN), [CALC_SCHEMA]),
}


@pytest.mark.parametrize(
    "name",
    ["gemma3.jinja", "qwen3.jinja", "llama3.2.jinja", "chatml.jinja", "hermes3_tool_use.jinja"],
)
@pytest.mark.parametrize("conv", ["plain", "tools"])
def test_bounded_sandbox_renders_like_stock_transformers(name, conv):
    messages, tools = CONVERSATIONS[conv]
    if name == "gemma3.jinja" and tools:
        pytest.skip("the Gemma 3 template has no tool turns")
    if name == "hermes3_tool_use.jinja" and not tools:
        pytest.skip("the tool_use variant is only used with tools")
    if name == "chatml.jinja" and tools:
        messages = [m for m in messages if m["role"] in ("user", "assistant", "system")]
    source = (TEMPLATES / name).read_text(encoding="utf-8")
    fixed = dt.datetime(2026, 11, 26)
    ours = ChatTemplate(source, "<s>", "</s>", now=lambda: fixed)
    for gen in (True, False):
        expected = stock_hf_render(
            source,
            messages=messages,
            tools=tools,
            add_generation_prompt=gen,
            bos_token="<s>",
            eos_token="</s>",
            enable_thinking=True,
        )
        assert ours.render(messages, tools=tools, add_generation_prompt=gen) == expected
