"""Hostile model output and hostile tool calls (issue 14, classes 3, 4 and 9).

A model's reply is untrusted input: deep JSON, huge numbers and thousands of tags must become
parse errors fed back to the model, in time linear in the reply. A tool call must be checked
before it runs, bounded in wall-clock time even inside one C call, and ``list_files`` must list
the directory it checked.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggufref.chat import tools
from ggufref.chat.tools import (
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    ToolCall,
    ToolRegistry,
    builtin_registry,
    calculator,
    decode_json,
    json_depth,
    make_list_files,
    parse_reply,
    split_reasoning,
)
from ggufref.errors import ToolCallError

STYLES = ("auto", "hermes", "llama3", "pythonic")

# --- parsers: never an exception -----------------------------------------------------------

DEEP = 1200  # past the interpreter's recursion limit for json's C scanner
HOSTILE_REPLIES = {
    "hermes nested objects": "<tool_call>" + '{"a":' * DEEP + "1" + "}" * DEEP + "</tool_call>",
    "hermes nested arrays, unclosed": "<tool_call>" + "[" * 100_000,
    "hermes huge int": '<tool_call>{"name": "f", "arguments": {"a": ' + "9" * 5000 + "}}",
    "hermes huge int in string args": '<tool_call>{"name": "f", "arguments": "{\\"a\\": '
    + "9" * 5000
    + '}"}</tool_call>',
    "hermes deep string args": '<tool_call>{"name": "f", "arguments": "'
    + "[" * DEEP
    + '"}</tool_call>',
    "llama3 nested": '{"a":' * DEEP,
    "llama3 huge negative int": '{"name": "f", "parameters": {"a": -' + "9" * 4400 + "}}",
    "llama3 many calls": '{"name": "f", "parameters": {}};' * 5000,
    "pythonic nested lists": "[f(a=" + "[" * 5000 + ")]",
    "pythonic nested parens": "[f(a=" + "(" * 50_000 + ")]",
    "pythonic huge int": "[f(a=" + "9" * 4400 + ")]",
    "fenced nested": "```json\n" + '{"a":' * DEEP + "\n```",
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", list(HOSTILE_REPLIES))
def test_hostile_replies_become_parse_errors(name: str, style: str) -> None:
    reply = parse_reply(HOSTILE_REPLIES[name], style)  # must not raise
    assert not reply.tool_calls or name == "llama3 many calls"
    if style in ("auto", name.split()[0]) and name != "llama3 many calls":
        assert reply.errors, name


def test_the_limits_are_the_ones_reported() -> None:
    ok = '{"a":' * MAX_JSON_DEPTH + "1" + "}" * MAX_JSON_DEPTH
    assert decode_json(ok)[1] == len(ok)
    with pytest.raises(tools._CallTooBig, match=f"limit {MAX_JSON_DEPTH}"):
        decode_json("[" + ok + "]")
    assert decode_json("9" * MAX_INT_DIGITS)[0] == int("9" * MAX_INT_DIGITS)
    with pytest.raises(tools._CallTooBig, match=f"limit {MAX_INT_DIGITS}"):
        decode_json("9" * (MAX_INT_DIGITS + 1))


def test_json_depth_skips_strings() -> None:
    assert json_depth('{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]"}]}') == 3
    assert json_depth("[" * 10 + "]" * 10) == 10


def test_a_deep_reply_is_fed_back_through_the_agent_loop() -> None:
    """The agent loop gets errors (to show the model), not a RecursionError."""
    reply = parse_reply(HOSTILE_REPLIES["hermes nested objects"], "hermes")
    assert reply.errors and "nested" in reply.errors[0]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789-. abtrufnl\\<>/_clo', max_size=400))
def test_parse_reply_never_raises(text: str) -> None:
    for style in STYLES:
        reply = parse_reply(text, style)
        assert isinstance(reply.content, str)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids),
        max_leaves=20,
    )
)
def test_bounded_decoder_agrees_with_json(value: object) -> None:
    """Within the limits, decode_json reads what json.dumps wrote."""
    import json

    text = json.dumps(value)
    assert decode_json(text)[0] == value


# --- linear-time scanning -----------------------------------------------------------------
# Each input below took 20-44 s at a tenth of this size with the old regexes (quadratic), so at
# this size they would take about an hour; linear scanning takes milliseconds. The child process
# is killed after 10 s, so a regression fails instead of hanging the suite.

LINEAR_INPUTS = {
    "think tags": '"<think>" * 200_000',
    "closing think tags": '"</think><think>" * 100_000',
    "fence with spaces": '"```" + " " * 400_000 + "x"',
    "fence with newlines": '"```json" + "\\n" * 400_000 + "`"',
    "open tool_call tags": '"<tool_call>" * 100_000',
    "python call start": '"[" + " " * 400_000 + "!"',
}


@pytest.mark.parametrize("name", list(LINEAR_INPUTS))
def test_reply_scanning_is_linear(name: str) -> None:
    code = textwrap.dedent(
        f"""
        from ggufref.chat.tools import parse_reply
        text = {LINEAR_INPUTS[name]}
        for style in {STYLES!r}:
            parse_reply(text, style)
        print("done")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10)
    assert run.stdout.strip() == "done", run.stderr[-1000:]


def test_split_reasoning_keeps_its_meaning() -> None:
    assert split_reasoning("a<think>x</think>b<think>y</think>c") == ("abc", "x\n\ny")
    assert split_reasoning("hidden</think>shown") == ("shown", "hidden")
    assert split_reasoning("shown<think>cut off") == ("shown", "cut off")
    assert split_reasoning("<think><think>x</think>") == ("", "<think>x")
    assert tools.unfence("```json\n{}\n```") == "{}"
    assert tools.unfence("```\n[f()]```") == "[f()]"
    assert tools.unfence("``` x") is None


# --- the calculator and the registry ------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "round(1, -10**8)",
        "round(1.5, 10**9)",
        "round(1, 10**400)",
        "9**9**9",
        "factorial(10**9)",
        "(-8) ** 0.5",
        "10**1000 * 10**1000 * 10**1000 * 10**1000 * 10**1000",
        "-" * 499 + "1",
        "(" * 240 + "1" + ")" * 240,
        "1" * 501,
    ],
)
def test_calculator_refuses_before_computing(expression: str) -> None:
    t0 = time.process_time()
    try:
        result = calculator(expression)
    except ToolCallError as err:
        assert str(err).startswith("calculator:")
    else:
        assert len(result) < 2000
    assert time.process_time() - t0 < 1.0  # each one was seconds to minutes of C work before


def test_round_within_the_limit_still_rounds() -> None:
    assert calculator("round(2.675, 2)") == "2.67"
    assert calculator(f"round(123456, -{tools.MAX_ROUND_DIGITS})") == "0"


def test_arguments_are_measured_before_the_tool_runs() -> None:
    ran = []
    reg = ToolRegistry()

    def echo(text: str) -> str:
        """Echo."""
        ran.append(text)
        return text

    def spam(n: int) -> str:
        """Spam."""
        return "y" * n

    reg.register(echo)
    reg.register(spam, timeout=5.0)
    content, ok = reg.run(ToolCall("echo", {"text": "x" * (tools.MAX_ARGUMENT_CHARS + 1)}))
    assert not ok and "limit" in content and not ran
    content, ok = reg.run(ToolCall("spam", {"n": 10**8}))  # cut in the child, before the pipe
    assert ok and len(content) < tools.MAX_RESULT_CHARS + 100


def test_a_timeout_stops_c_level_work() -> None:
    """``10 ** 10 ** 8`` runs minutes inside one C call; the child is killed at the deadline."""
    reg = ToolRegistry()

    def power_digits(n: int) -> str:
        """Digits of 10**10**n."""
        return str(len(str(10 ** (10**n))))

    reg.register(power_digits, timeout=0.5)
    t0 = time.monotonic()
    content, ok = reg.run(ToolCall("power_digits", {"n": 9}))
    assert not ok and "did not finish within 0.5 s" in content
    assert time.monotonic() - t0 < 5
    assert reg.run(ToolCall("power_digits", {"n": 1})) == ("11", True)


def test_builtin_tools_run_in_a_child_and_report_errors() -> None:
    reg = builtin_registry(".")
    assert reg.run(ToolCall("calculator", {"expression": "6*7"})) == ("42", True)
    content, ok = reg.run(ToolCall("calculator", {"expression": "1/0"}))
    assert not ok and "division by zero" in content


# --- list_files: what was checked is what is listed ---------------------------------------


@pytest.fixture
def racy_workspace(tmp_path: Path) -> tuple[Path, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    root = tmp_path / "ws"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "inside.txt").write_text("i")
    return root, outside


def test_list_files_under_a_racing_symlink_swap(racy_workspace: tuple[Path, Path]) -> None:
    """A writer keeps swapping ``sub`` between a real directory and a symlink to outside.

    The old check-then-list (realpath, then scandir by name) listed the outside directory in
    about 3 % of calls; walking with O_NOFOLLOW descriptors never does.
    """
    root, outside = racy_workspace
    (root / "evil").symlink_to(outside)
    list_files = make_list_files(root)
    stop = threading.Event()

    def racer() -> None:
        while not stop.is_set():
            os.rename(root / "sub", root / "parked")
            os.rename(root / "evil", root / "sub")
            os.rename(root / "sub", root / "evil")
            os.rename(root / "parked", root / "sub")

    thread = threading.Thread(target=racer)
    thread.start()
    seen, errors = [], 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and len(seen) < 3000:
            try:
                seen.append(list_files("sub"))
            except ToolCallError:
                errors += 1
    finally:
        stop.set()
        thread.join()
    assert seen, f"no call succeeded ({errors} errors)"
    assert not [s for s in seen if "secret" in s]


def test_list_files_walks_symlinks_like_realpath(racy_workspace: tuple[Path, Path]) -> None:
    root, outside = racy_workspace
    (root / "rel").symlink_to("sub")
    (root / "abs").symlink_to(root / "sub")
    (root / "loop").symlink_to("loop")
    (root / "out").symlink_to(outside)
    list_files = make_list_files(root)
    assert list_files("rel") == list_files("abs") == list_files(str(root / "sub")) == "inside.txt"
    assert list_files("rel/../sub") == "inside.txt"
    for path in ("out", "rel/../..", "abs/../../outside", str(outside), "/"):
        with pytest.raises(ToolCallError, match="outside the workspace"):
            list_files(path)
    for path in ("loop", "sub/inside.txt", "missing", "x" * 5000, "a\0b"):
        with pytest.raises(ToolCallError):
            list_files(path)
