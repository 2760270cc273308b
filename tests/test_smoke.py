"""``ggufref smoke``: the model list, the table, the exit status, and config validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ggufref.chat.agent import AgentResult
from ggufref.chat.session import Turn
from ggufref.chat.tools import ToolCall
from ggufref.cli import main
from ggufref.smoke import SmokeRow, exit_status, format_table, judge, load_config
from ggufref.testing.models import write_model

REPO_CONFIG = Path(__file__).resolve().parents[1] / "smoke-models.json"


@pytest.fixture(scope="module")
def gemma3(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "gemma3.gguf", "gemma3")


def write_config(path: Path, entries: object) -> Path:
    path.write_text(json.dumps(entries))
    return path


def table_rows(out: str) -> dict[str, str]:
    """model -> the rest of its line, for the rows under the header and the rule."""
    rows = {}
    for line in out.splitlines()[2:]:
        model, rest = line.split(None, 1)
        rows[model] = rest
    return rows


def test_present_model_runs_and_absent_one_is_skipped(tmp_path, gemma3, capsys):
    absent = tmp_path / "Qwen3-0.6B-Q8_0.gguf"
    config = write_config(
        tmp_path / "smoke.json",
        [
            {
                "model": str(gemma3),
                "prompt": "The capital of France is",
                "steps": 8,
                "instruct": False,
            },
            {
                "model": str(absent),
                "prompt": "hi",
                "steps": 8,
                "instruct": True,
                "toolCalling": "What is 2+2?",
            },
        ],
    )
    # a SKIP row fails the run unless --allow-missing
    assert main(["smoke", "--config", str(config)]) == 1
    rows = table_rows(capsys.readouterr().out)
    assert rows[str(gemma3)].split()[0] == "complete"
    assert re.search(r"  (OK|WARN \(empty output\))$", rows[str(gemma3)])
    assert rows[str(absent)].endswith("SKIP (no such file)")
    expected = 0 if rows[str(gemma3)].endswith("OK") else 1
    assert main(["smoke", "--config", str(config), "--allow-missing"]) == expected


def test_json_rows(tmp_path, gemma3, capsys):
    config = write_config(
        tmp_path / "smoke.json",
        [
            {"model": str(gemma3), "prompt": "hello", "steps": 5, "instruct": True},
        ],
    )
    status = main(["smoke", "--config", str(config), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert status == (0 if row["status"] == "OK" else 1)
    assert row["mode"] == "chat" and row["status"] in ("OK", "WARN")
    assert 0 < row["tokens"] <= 5
    assert row["load_s"] > 0 and row["wall_s"] > 0


def test_a_broken_model_file_fails_the_run(tmp_path, capsys):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 10)
    config = write_config(
        tmp_path / "smoke.json",
        [
            {"model": str(broken), "prompt": "x", "steps": 4, "instruct": False},
        ],
    )
    assert main(["smoke", "--config", str(config)]) == 1
    line = table_rows(capsys.readouterr().out)[str(broken)]
    assert line.split()[0] == "load" and "FAIL (GGUFError:" in line


GOOD = {"model": "m.gguf", "prompt": "p", "steps": 4, "instruct": False}


@pytest.mark.parametrize(
    "content, words",
    [
        ('[{"model": ', "not valid JSON"),
        (json.dumps({"models": [GOOD]}), "JSON list"),
        (json.dumps([]), "JSON list"),
        (json.dumps([GOOD, "m.gguf"]), "entry 1: expected an object"),
        (json.dumps([{k: v for k, v in GOOD.items() if k != "steps"}]), "missing key 'steps'"),
        (json.dumps([{**GOOD, "steps": "4"}]), "'steps' must be int"),
        (json.dumps([{**GOOD, "steps": True}]), "'steps' must be int"),
        (json.dumps([{**GOOD, "steps": 0}]), "'steps' must be > 0"),
        (json.dumps([{**GOOD, "instruct": "no"}]), "'instruct' must be bool"),
        (json.dumps([{**GOOD, "toolCalling": 1}]), "'toolCalling' must be str"),
        (json.dumps([{**GOOD, "tool_calling": "x"}]), "unknown key 'tool_calling'"),
    ],
)
def test_broken_config_is_a_one_line_error(tmp_path, capsys, content, words):
    config = tmp_path / "smoke.json"
    config.write_text(content)
    assert main(["smoke", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and str(config) in err[0]


def test_missing_config(tmp_path, capsys):
    assert main(["smoke", "--config", str(tmp_path / "none.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_repository_config_is_valid():
    entries = load_config(REPO_CONFIG)
    assert entries[0].model == "gemma-3-270m" and not entries[0].instruct
    from ggufref.model_files import ALIASES

    instruct = [e for e in entries if e.instruct and e.tool_calling and e.tool]
    assert {e.model for e in instruct} == {
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    }
    assert all(e.model in ALIASES for e in entries)  # runs on a fresh machine after `pull`


def _turn(
    content: str,
    calls: list[ToolCall],
    tool_results: list[str],
    stop_reason: str = "eos",
    stop: str = "answered",
) -> Turn:
    from ggufref.chat.session import CompletionStats

    messages = [{"role": "tool", "name": "calculator", "content": c} for c in tool_results]
    finished = stop != "max_rounds"
    result = AgentResult(content, messages, 1, finished, None, calls, stop)
    return Turn(content, result=result, calls=[CompletionStats(10, 0, 5, stop_reason=stop_reason)])


def test_judge():
    call = ToolCall("calculator", {"expression": "2+2"})
    listing = ToolCall("list_files", {"path": "."})
    assert judge(_turn("Hello.", [], []), False) == ("OK", "")
    assert judge(_turn("  ", [], []), False) == ("WARN", "empty reply")
    assert judge(_turn("Red, green and", [], [], "length"), False)[1].startswith("stopped at")
    assert judge(_turn("Hi<|im_end|>", [], []), False) == (
        "WARN",
        "template markup in the reply: <|im_end|>",
    )
    assert judge(_turn("<|endoftext|>", [], []), False, control=frozenset({"<|endoftext|>"}))[
        1
    ].startswith("template markup")
    assert judge(_turn("4", [], []), True) == ("WARN", "did not call a tool")
    assert judge(_turn("It is 4.", [call], ["4"]), True) == ("OK", "called calculator; answered")
    assert (
        judge(_turn("It is 4.", [call], ["4"]), True, "list_files")[1] == "did not call list_files"
    )
    assert judge(_turn("It is five.", [call], ["4"]), True)[1] == (
        "the answer does not contain the tool's result"
    )
    assert judge(_turn("It is 4.", [call], ["4"], stop="max_rounds"), True)[1] == (
        "no answer (max_rounds)"
    )
    assert judge(_turn("It is 4.", [call], ["error: calculator: bad"]), True) == (
        "WARN",
        "a tool call failed",
    )
    # a listing counts when the answer names one of its entries
    found = _turn("There is notes.txt and a src folder.", [listing], ["notes.txt\nsrc/"])
    assert judge(found, True, "list_files")[0] == "OK"


def test_table_and_exit_status():
    rows = [
        SmokeRow("a", "complete", "OK", tokens=8, tok_s=40.0, wall_s=0.2, load_s=0.5),
        SmokeRow("b", "-", "SKIP", "not found"),
        SmokeRow("c", "tools", "WARN", "no tool call", tokens=3, wall_s=0.1),
    ]
    lines = format_table(rows).splitlines()
    assert lines[0].split() == [
        "model",
        "mode",
        "load",
        "s",
        "tokens",
        "tok/s",
        "wall",
        "s",
        "result",
    ]
    assert lines[2].split() == ["a", "complete", "0.50", "8", "40.0", "0.20", "OK"]
    assert lines[3].split() == ["b", "-", "-", "-", "-", "-", "SKIP", "(not", "found)"]
    assert exit_status(rows) == 1  # WARN and SKIP both fail a run
    assert exit_status(rows[:2]) == 1
    assert exit_status(rows[:2], allow_missing=True) == 0
    assert exit_status(rows[:1]) == 0
    assert exit_status([rows[0], SmokeRow("d", "load", "FAIL", "boom")], True) == 1
