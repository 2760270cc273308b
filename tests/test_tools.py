"""Tool calling: schemas from functions, argument validation, reply parsing, demo tools."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggufref.chat.tools import (
    ToolCall,
    ToolRegistry,
    builtin_registry,
    calculator,
    function_schema,
    make_list_files,
    parse_reply,
    split_reasoning,
    tool_call_style,
)
from ggufref.errors import ToolCallError

# --- schemas ------------------------------------------------------------------------------


def get_weather(city: str, days: int = 1, unit: Literal["C", "F"] = "C") -> str:
    """Get the weather forecast for a city.

    More text that is not part of the summary.

    Args:
        city: Name of the city,
            for example "Paris".
        days (int): How many days ahead.
        unit: Temperature unit.

    Returns:
        A short forecast.
    """
    return f"{city}: sunny for {days} day(s), 20 {unit}"


def numpy_style(xs: list[float], label: str | None = None) -> str:
    """Sum numbers.

    Parameters
    ----------
    xs : list of float
        The numbers.
    label : str, optional
        A label.
    """
    return f"{label}: {sum(xs)}"


def test_google_docstring_schema():
    assert function_schema(get_weather) == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the weather forecast for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {
                        "type": "string",
                        "description": 'Name of the city, for example "Paris".',
                    },
                    "days": {"type": "integer", "description": "How many days ahead."},
                    "unit": {
                        "type": "string",
                        "enum": ["C", "F"],
                        "description": "Temperature unit.",
                    },
                },
                "required": ["city"],
            },
        },
    }


def test_numpy_docstring_schema():
    params = function_schema(numpy_style)["function"]["parameters"]
    assert params["properties"] == {
        "xs": {"type": "array", "items": {"type": "number"}, "description": "The numbers."},
        "label": {"type": "string", "description": "A label."},
    }
    assert params["required"] == ["xs"]


def test_registry_decorator_and_validation():
    reg = ToolRegistry()

    @reg.register
    def add(a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    assert add(1, 2) == 3  # the decorator returns the function unchanged
    assert reg.names() == ["add"] and "add" in reg
    assert reg.call(ToolCall("add", {"a": 2, "b": 3})) == "5"
    for args, msg in [
        ({"b": 1}, "missing required argument"),
        ({"a": 1, "c": 2}, "unknown argument"),
        ({"a": "1"}, "expected integer"),
        ({"a": True}, "expected integer"),  # bool is not an integer in JSON schema
        ([1, 2], "must be an object"),
    ]:
        with pytest.raises(ToolCallError, match=msg):
            reg.call(ToolCall("add", args))  # type: ignore[arg-type]
    content, ok = reg.run(ToolCall("nope", {}))
    assert not ok and content.startswith("error: unknown tool 'nope'; available: add")


def test_tool_exception_becomes_error_message():
    reg = ToolRegistry()

    def boom() -> str:
        """Fail."""
        raise RuntimeError("disk on fire")

    reg.register(boom)
    assert reg.run(ToolCall("boom", {})) == (
        "error: boom failed: RuntimeError: disk on fire",
        False,
    )


# --- parsing ------------------------------------------------------------------------------


def test_parse_hermes_several_calls_and_reasoning():
    text = (
        "<think>\nNeed two tools.\n</think>\n\nLet me check.\n"
        '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": "{\\"y\\": \\"z\\"}"}\n</tool_call>'
    )
    r = parse_reply(text)
    assert r.reasoning == "Need two tools."
    assert r.content == "Let me check."
    assert [(c.name, c.arguments, c.id) for c in r.tool_calls] == [
        ("a", {"x": 1}, "call_0"),
        ("b", {"y": "z"}, "call_1"),
    ]
    assert r.errors == []


def test_parse_hermes_malformed_is_an_error_not_an_exception():
    r = parse_reply('<tool_call>\n{"name": "a", "arguments": {"x": 1}\n</tool_call>')
    assert r.tool_calls == [] and len(r.errors) == 1 and "not valid JSON" in r.errors[0]
    r = parse_reply('<tool_call>{"arguments": {}}</tool_call>')
    assert r.tool_calls == [] and 'needs a JSON object with a "name"' in r.errors[0]
    # generation stopped before </tool_call>: the call is still read
    r = parse_reply('<tool_call>\n{"name": "a", "arguments": {}}')
    assert [c.name for c in r.tool_calls] == ["a"]


def test_parse_llama3_json_forms():
    r = parse_reply('{"name": "calculator", "parameters": {"expression": "1+1"}}')
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("calculator", {"expression": "1+1"})]
    r = parse_reply(
        '<|python_tag|>{"type": "function", "name": "a", "parameters": {}}; '
        '{"type": "function", "function": {"name": "b", "arguments": {"k": [1]}}}'
    )
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("a", {}), ("b", {"k": [1]})]
    r = parse_reply('{"name": "a", "parameters": {"x": }')
    assert r.tool_calls == [] and "not valid JSON" in r.errors[0]


def test_parse_pythonic_calls():
    r = parse_reply('[calculator(expression="6*7"), list_files(path="."), f(a=true, b=[1, None])]')
    assert [(c.name, c.arguments) for c in r.tool_calls] == [
        ("calculator", {"expression": "6*7"}),
        ("list_files", {"path": "."}),
        ("f", {"a": True, "b": [1, None]}),
    ]
    fenced = parse_reply("```tool_code\n[g(x=-1.5)]\n```")
    assert [(c.name, c.arguments) for c in fenced.tool_calls] == [("g", {"x": -1.5})]


@pytest.mark.parametrize(
    "text",
    [
        "[f(a=__import__('os').system('true'))]",
        "[f(a=open('/etc/passwd'))]",
        "[f(a=(1).__class__)]",
        "[f(a=lambda: 1)]",
        "[f(a=9**9**9)]",
        "[f(a=x)]",
        "[f(1)]",
        "[os.system(a='1')]",
        "[f(a=1]",
    ],
)
def test_parse_pythonic_never_evaluates(text):
    start = time.perf_counter()
    r = parse_reply(text)
    assert r.tool_calls == [] and len(r.errors) == 1
    assert time.perf_counter() - start < 0.5


def test_plain_text_has_no_calls():
    for text in ["The answer is 42.", "[1, 2, 3] are numbers", "{not json at all"]:
        r = parse_reply(text, style="hermes" if text.startswith("{") else "auto")
        assert r.tool_calls == [] and r.content == text and r.errors == []


def test_split_reasoning_edge_cases():
    assert split_reasoning("plain") == ("plain", None)
    assert split_reasoning("opened by the prompt</think>\n\nanswer") == (
        "answer",
        "opened by the prompt",
    )
    assert split_reasoning("answer<think>cut off while thinking") == (
        "answer",
        "cut off while thinking",
    )
    assert split_reasoning("<think>\n\n</think>\n\nanswer") == ("answer", None)


def test_tool_call_style_from_template():
    assert tool_call_style("... <tool_call> ...") == "hermes"
    assert tool_call_style('<|start_header_id|> "parameters"') == "llama3"
    assert tool_call_style("<start_of_turn>") == "pythonic"


# --- calculator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("6*7", "42"),
        ("(1 + 2) * -3", "-9"),
        ("7 // 2 + 7 % 2", "4"),
        ("1 / 4", "0.25"),
        ("2 ** 10", "1024"),
        ("sqrt(16) + factorial(5)", "124"),
        ("round(pi, 3)", "3.142"),
        ("2 ** 0.5", "1.41421356237"),
    ],
)
def test_calculator_arithmetic(expr, value):
    assert calculator(expr) == value


@pytest.mark.parametrize(
    ("expr", "msg"),
    [
        ("__import__('os')", "only these functions"),
        ("os.system", "attribute access"),
        ("(1).__class__", "attribute access"),
        ("lambda: 1", "Lambda is not arithmetic"),
        ("x + 1", "unknown name 'x'"),
        ("9**9**9", "too large"),
        ("2**10**10", "too large"),
        ("2**4000 * 2**4000", "more than 4096 bits"),
        ("factorial(10**6)", "factorial needs an integer"),
        ("1/0", "division by zero"),
        ("10.0**400", "too large|finite"),
        ("'a' * 10", "str is not arithmetic|Constant is not arithmetic"),
        ("True + 1", "Constant is not arithmetic"),
        ("[1] * 10**9", "List is not arithmetic"),
        ("1 +", "not an expression"),
        ("1" * 600, "longer than"),
    ],
)
def test_calculator_rejects(expr, msg):
    start = time.perf_counter()
    with pytest.raises(ToolCallError, match=msg):
        calculator(expr)
    assert time.perf_counter() - start < 0.5


# --- list_files ---------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path):
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a")
    (root / "sub" / "b.txt").write_text("b")
    (tmp_path / "secret.txt").write_text("s")
    os.symlink(tmp_path, root / "escape")  # points outside the workspace
    os.symlink(root / "sub", root / "inside")  # points inside: fine
    return root


def test_list_files_inside_the_root(workspace):
    list_files = make_list_files(workspace)
    assert list_files() == "a.txt\nescape\ninside\nsub/"
    assert list_files("sub") == "b.txt"
    assert list_files("sub/../sub") == "b.txt"
    assert list_files("inside") == "b.txt"


@pytest.mark.parametrize(
    "path", ["..", "../..", "sub/../..", "/etc", "/", "escape", "inside/../.."]
)
def test_list_files_refuses_to_leave_the_root(workspace, path):
    with pytest.raises(ToolCallError, match="outside the workspace"):
        make_list_files(workspace)(path)


def test_builtin_registry_runs_both_tools(workspace):
    reg = builtin_registry(workspace)
    assert reg.names() == ["calculator", "list_files"]
    assert reg.run(ToolCall("calculator", {"expression": "6*7"})) == ("42", True)
    assert reg.run(ToolCall("list_files", {"path": "sub"})) == ("b.txt", True)
    content, ok = reg.run(ToolCall("list_files", {"path": "/etc"}))
    assert not ok and "outside the workspace" in content
    schema = reg.schema("list_files")["function"]
    assert schema["parameters"]["required"] == [] and schema["description"].startswith("List")


# --- robustness: nothing the model writes makes the parser or the calculator crash --------

REPLY_PIECES = st.sampled_from(
    [
        "<tool_call>",
        "</tool_call>",
        "<think>",
        "</think>",
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        '"',
        "name",
        ":",
        ",",
        "=",
        "f",
        "arguments",
        "parameters",
        ";",
        "<|python_tag|>",
        "\n",
        "1",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(REPLY_PIECES | st.text(max_size=5), max_size=30).map("".join))
def test_parse_reply_never_raises(text):
    for style in ("auto", "hermes", "llama3", "pythonic"):
        reply = parse_reply(text, style)
        assert isinstance(reply.content, str)
        assert all(isinstance(c.arguments, dict) for c in reply.tool_calls)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789+-*/%().e ", max_size=40))
def test_calculator_only_raises_tool_call_error(expr):
    with contextlib.suppress(ToolCallError):
        assert isinstance(calculator(expr), str)
