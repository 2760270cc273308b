"""``ggufref chat``: one-shot and interactive, on tiny synthetic models (random weights).

The models say nothing sensible, so these tests check the plumbing: exit codes, where text and
tool activity go, the REPL commands, history across turns and KV-cache reuse between turns.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggufref.chat.session import ChatSession
from ggufref.cli.chat_cmd import select_tools
from ggufref.errors import ToolCallError
from ggufref.generate import Engine, common_prefix
from ggufref.testing.models import write_model

PYSRC = str(Path(__file__).resolve().parents[1] / "pysrc")
STATS = re.compile(r"\[prompt (\d+) tok, (\d+) cached \| (\d+) tok")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "qwen3.gguf", "qwen3")


def ggufref(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI the way a user does, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": PYSRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "ggufref", *args],
        input=stdin,
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0]


# --- one-shot --------------------------------------------------------------------------------


def test_single_shot_with_calculator(qwen3):
    # --system "": the template's own default (the synthetic vocabulary is verbose, and the
    # tool-use system message would not leave room in its 512-token context)
    argv = ["What is 2+2?", "--tools", "calculator", "-n", "24", "--seed", "3", "--system", ""]
    proc = ggufref("chat", "-m", str(qwen3), *argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()  # the model's (random) reply
    assert "Traceback" not in proc.stderr
    stats = STATS.search(proc.stderr)
    assert stats, proc.stderr
    prompt_tokens, cached, generated = map(int, stats.groups())
    assert cached == 0 and 0 < generated <= 24
    assert prompt_tokens > 100  # the calculator's schema is in the prompt


def test_unknown_tool_is_a_one_line_error(qwen3):
    proc = ggufref("chat", "-m", str(qwen3), "hi", "--tools", "calculator,rm_rf")
    assert_one_line_error(proc, "unknown tool 'rm_rf'", "calculator, list_files")


def test_select_tools(tmp_path):
    assert select_tools("", str(tmp_path)).names() == []
    assert select_tools(" list_files , calculator", str(tmp_path)).names() == [
        "list_files",
        "calculator",
    ]
    with pytest.raises(ToolCallError):
        select_tools("calculator,shell", str(tmp_path))


def test_single_shot_prompt_longer_than_context(qwen3):
    proc = ggufref("chat", "-m", str(qwen3), "word " * 200, "--ctx", "64")
    assert_one_line_error(proc, "context")


# --- the interactive loop --------------------------------------------------------------------


def test_repl_reset_and_exit(qwen3):
    proc = ggufref(
        "chat",
        "-m",
        str(qwen3),
        "-n",
        "8",
        "--seed",
        "1",
        stdin="hello\n/reset\nhi\n/exit\nnever read\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "(new conversation)" in proc.stderr
    assert len(STATS.findall(proc.stderr)) == 2  # two replies; nothing after /exit
    assert proc.stdout.count("> ") == 4  # prompts: hello, /reset, hi, /exit


def test_repl_keeps_history_and_reuses_the_cache(qwen3):
    proc = ggufref(
        "chat", "-m", str(qwen3), "-n", "8", "--seed", "1", stdin="hello\nand then?\n"
    )  # EOF ends the session
    assert proc.returncode == 0, proc.stderr
    (p1, c1, g1), (p2, c2, _) = [tuple(map(int, m)) for m in STATS.findall(proc.stderr)]
    assert c1 == 0
    assert p2 > p1 + g1 - 1  # turn 2's prompt holds turn 1's prompt and reply
    assert c2 >= p1  # at least all of turn 1's prompt came from the cache


def test_repl_context_overflow_is_a_message_not_a_crash(qwen3):
    proc = ggufref(
        "chat", "-m", str(qwen3), "--ctx", "64", "-n", "4", stdin="word " * 200 + "\n/reset\nhi\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "context" in proc.stderr and "/reset" in proc.stderr
    assert len(STATS.findall(proc.stderr)) == 1  # the short message after /reset was answered


def test_repl_unknown_command(qwen3):
    proc = ggufref("chat", "-m", str(qwen3), stdin="/help\n/exit\n")
    assert proc.returncode == 0
    assert "unknown command /help" in proc.stderr


# --- the session in-process: cache reuse and Ctrl-C ------------------------------------------


def spy_on_forward(engine: Engine) -> list[tuple[int, int, np.ndarray]]:
    """Record (n_tokens, first position, last row of logits) of every forward pass."""
    calls: list[tuple[int, int, np.ndarray]] = []
    real_forward = engine.model.forward

    def spy(tokens, pos0=None, all_logits=False):
        start = engine.model.cache.n_past if pos0 is None else pos0
        logits = real_forward(tokens, pos0, all_logits)
        calls.append((len(tokens), start, logits[-1].copy()))
        return logits

    engine.model.forward = spy  # type: ignore[method-assign]
    return calls


def test_second_turn_prefills_only_new_tokens(qwen3):
    engine = Engine(qwen3, progress=False)
    session = ChatSession(engine, max_tokens=12)
    ids1 = session.engine.encode_rendered(
        session.template.render([{"role": "user", "content": "hello there"}])
    )
    session.ask("hello there")

    forwarded = spy_on_forward(engine)
    convo = [*session.messages, {"role": "user", "content": "and now?"}]
    ids2 = session.engine.encode_rendered(session.template.render(convo))
    turn = session.ask("and now?")

    assert common_prefix(ids1, ids2) == len(ids1)  # the new prompt extends the old one
    n_new, pos0, logits = forwarded[0]  # the prefill of turn 2
    assert pos0 >= len(ids1)  # nothing of turn 1's prompt was recomputed
    assert pos0 + n_new == len(ids2)
    assert turn.calls[0].reused_tokens == pos0
    # the reused cache gives the logits a fresh engine computes from scratch
    reference = Engine(qwen3, progress=False).model.forward(ids2)[-1]
    np.testing.assert_allclose(logits, reference, atol=1e-3 * np.abs(reference).max())


def test_ctrl_c_stops_the_reply_and_keeps_the_session(qwen3):
    engine = Engine(qwen3, progress=False)
    chunks: list[str] = []

    def interrupt_after_five(kind, payload):
        if kind == "text" and payload:
            chunks.append(payload)
            if len(chunks) == 5:
                raise KeyboardInterrupt

    session = ChatSession(engine, max_tokens=40, on_event=interrupt_after_five)
    turn = session.ask("tell me a story")
    assert turn.interrupted
    assert [m["role"] for m in session.messages] == ["user", "assistant"]
    assert session.messages[1]["content"] == "".join(chunks).strip()
    # the engine's record of cached ids never runs past what the cache really holds
    assert len(engine._cached) <= engine.model.cache.n_past

    session.on_event = lambda kind, payload: None
    turn2 = session.ask("go on")
    assert not turn2.interrupted and turn2.tokens > 0
    assert [m["role"] for m in session.messages] == ["user", "assistant"] * 2
    session.reset()
    assert session.messages == []


def test_a_prefill_cut_short_leaves_only_valid_cached_ids(qwen3):
    """Ctrl-C inside a prefill: the cache holds K/V of the new tokens at positions the old
    prompt used. The engine must forget those ids by itself, so the next prompt does not
    reuse them."""
    engine = Engine(qwen3, progress=False)
    ids_a = engine.encode("the first prompt, long enough to matter here")
    ids_b = ids_a[:3] + engine.encode(" something else entirely", add_bos=False)
    engine.generate(ids_a, 1)  # the cache now holds ids_a
    real_forward = engine.model.forward

    def cut_short(tokens, pos0=None, all_logits=False):
        real_forward(tokens, pos0, all_logits)  # every layer writes K/V for ids_b ...
        engine.model.cache.n_past = pos0  # ... but the pass never completes
        raise KeyboardInterrupt

    engine.model.forward = cut_short  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        engine.generate(ids_b, 1)
    engine.model.forward = real_forward  # type: ignore[method-assign]
    assert engine.cached_tokens == ids_a[:3]

    ids_c = ids_a + engine.encode(" and more", add_bos=False)
    forwarded = spy_on_forward(engine)
    engine.generate(ids_c, 1)
    reference = Engine(qwen3, progress=False).model.forward(ids_c)[-1]
    np.testing.assert_allclose(forwarded[0][2], reference, atol=1e-3 * np.abs(reference).max())


# --- tools: the default system message and --json ---------------------------------------------


def test_json_needs_a_prompt(qwen3):
    proc = ggufref("chat", "-m", str(qwen3), "--json")
    assert_one_line_error(proc, "--json needs a PROMPT")


def test_tools_bring_the_tool_use_system_message_unless_the_user_gives_one(qwen3):
    from ggufref.chat.agent import TOOL_SYSTEM_PROMPT

    engine = Engine(qwen3, progress=False)
    calc = select_tools("calculator", ".")
    with_tools = ChatSession(engine, registry=calc)
    assert with_tools.messages == [{"role": "system", "content": TOOL_SYSTEM_PROMPT}]
    assert ChatSession(engine, registry=calc, system="Be terse.").messages[0]["content"] == (
        "Be terse."
    )
    assert ChatSession(engine, registry=calc, system="").messages == []  # --system ''
    assert ChatSession(engine).messages == []  # no tools: the template's own default
    with_tools.reset()
    assert with_tools.messages[0]["content"] == TOOL_SYSTEM_PROMPT  # /reset keeps it


def test_json_output_is_one_object_with_the_conversation(qwen3):
    import json

    argv = ["2+2?", "--tools", "calculator", "-n", "8", "--system", "", "--json"]
    proc = ggufref("chat", "-m", str(qwen3), "--temperature", "0", *argv)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)  # nothing else on stdout: the random reply did not stream
    keys = {"content", "messages", "rounds", "finished", "stop", "usage", "timings"}
    assert keys <= set(out)
    assert out["messages"][0] == {"role": "user", "content": "2+2?"}
    assert out["stop"] in ("answered", "repeated_call", "max_rounds")
    assert out["usage"]["prompt_tokens"] > 100 and out["usage"]["completion_tokens"] <= 8 * 5
