"""A real instruct model end to end: Qwen2.5-Coder 0.5B Instruct (491 MB, `ggufref pull`).

Greedy, so every run is the same. These tests check what a user sees, not exact text: the
chat answers and stops at end-of-turn, a tool call made by the model itself runs and its result
reaches the answer, and the loop guard meets the model's real habit of repeating a call.

The model is assembled by `make test` (`ggufref pull qwen2.5-coder-0.5b-instruct`); without it
these tests skip, saying so, unless GGUFREF_REQUIRE_MODELS=1 (set by `make test`) makes the
absence a failure.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ggufref.cli import main
from ggufref.errors import GGUFError
from ggufref.model_files import resolve_model

ALIAS = "qwen2.5-coder-0.5b-instruct"
MARKUP = ("<|im_start|>", "<|im_end|>", "<tool_call>", "<|endoftext|>")


@pytest.fixture(scope="module")
def engine():
    try:
        resolve_model(ALIAS, progress=False)
    except GGUFError as err:
        if os.environ.get("GGUFREF_REQUIRE_MODELS") == "1":
            pytest.fail(f"{err} (GGUFREF_REQUIRE_MODELS=1)")
        pytest.skip(f"{ALIAS} is not assembled: run `ggufref pull {ALIAS}`")
    from ggufref.generate import Engine

    return Engine(ALIAS, progress=False)


def _session(engine, **kw):
    from ggufref.chat.session import ChatSession

    engine.reset()
    return ChatSession(engine, max_tokens=96, **kw)


def test_greedy_chat_answers_and_stops_at_end_of_turn(engine):
    turn = _session(engine).ask("Name three primary colours.")
    (call,) = turn.calls
    assert call.stop_reason == "eos", turn.content  # ended the turn itself, not at -n
    assert not any(m in turn.content for m in MARKUP)
    colours = [c for c in ("red", "blue", "yellow", "green") if c in turn.content.lower()]
    assert len(colours) >= 2, turn.content


def test_calculator_round_trip_through_the_cli_json(engine, capsys):
    prompt = "What is 17 * 23? Use the calculator."
    argv = ["chat", "-m", ALIAS, "--tools", "calculator", "--temperature", "0", "--json"]
    assert main([*argv, prompt]) == 0
    out = json.loads(capsys.readouterr().out)
    messages = out["messages"]
    assert [m["role"] for m in messages[:3]] == ["system", "user", "assistant"]
    first = messages[2]["tool_calls"][0]
    assert first["type"] == "function" and first["function"]["name"] == "calculator"
    arguments = json.loads(first["function"]["arguments"])  # OpenAI style: a JSON string
    assert "17" in arguments["expression"] and "23" in arguments["expression"]
    result = next(m for m in messages if m["role"] == "tool")
    assert result["tool_call_id"] == first["id"] and result["content"] == "391"
    assert out["finished"] and "391" in out["content"], out["content"]
    assert out["stop"] in ("answered", "repeated_call")
    # every completion is an assistant message, except a repeated call, which is not kept
    repeats = 1 if out["stop"] == "repeated_call" else 0
    assert out["rounds"] == sum(m["role"] == "assistant" for m in messages) + repeats
    assert out["usage"]["completion_tokens"] > 0 and out["timings"]["decode_s"] > 0


def test_the_loop_guard_meets_a_real_repeated_call(engine):
    # Greedy, this model answers a tool result by calling the tool again with the same
    # arguments: the guard must not run it twice, and must still end with an answer.
    from ggufref.cli.chat_cmd import select_tools

    events: list[tuple[str, object]] = []
    session = _session(
        engine,
        registry=select_tools("calculator", "."),
        on_event=lambda kind, payload: events.append((kind, payload)),
    )
    turn = session.ask("What is 1234 * 5678?")
    result = turn.result
    assert result is not None and result.stop == "repeated_call"
    kinds = [k for k, _ in events]
    assert kinds.count("repeated_call") == 1
    keys = [(c.name, json.dumps(c.arguments, sort_keys=True)) for c in result.tool_calls]
    assert len(keys) == len(set(keys)) == kinds.count("tool_result")  # nothing ran twice
    # The answer round starts in words (the 0.5B's wording is its own: it does not always
    # repeat the number, which tools/eval_agent.py counts; the 17 * 23 test above checks it).
    assert result.finished and turn.content[:1].isalnum(), turn.content
    assert not any(m in turn.content for m in MARKUP) and "{" not in turn.content[:1]


def test_list_files_round_trip_over_a_temp_directory(engine, tmp_path: Path):
    from ggufref.cli.chat_cmd import select_tools

    (tmp_path / "README.md").write_text("# demo\n")
    (tmp_path / "notes.txt").write_text("notes\n")
    (tmp_path / "src").mkdir()
    # The template's own system line (system=""): with it this model calls list_files(".").
    session = _session(engine, system="", registry=select_tools("list_files", str(tmp_path)))
    turn = session.ask("Which files are in the workspace?")
    result = turn.result
    assert result is not None and result.tool_calls, turn.content
    assert result.tool_calls[0].name == "list_files"
    listings = [m["content"] for m in result.messages if m["role"] == "tool"]
    assert listings[0] == "README.md\nnotes.txt\nsrc/"  # the tool saw the real directory
    named = [n for n in ("README.md", "notes.txt", "src") if n in turn.content]
    assert result.finished and named, turn.content


def test_smoke_row_of_the_instruct_model(engine, tmp_path, capsys):
    config = tmp_path / "smoke.json"
    row = {
        "model": ALIAS,
        "prompt": "Name three primary colours.",
        "steps": 96,
        "instruct": True,
        "toolCalling": "What is 17 * 23? Use the calculator.",
        "tool": "calculator",
    }
    config.write_text(json.dumps([row]))
    status = main(["smoke", "--config", str(config), "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [(r["mode"], r["status"]) for r in rows] == [("chat", "OK"), ("tools", "OK")], rows
    assert status == 0
