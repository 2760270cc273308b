"""Smoke runs: load each model of a list, make it talk, and say in one table whether it works.

The list is JSON (``smoke-models.json`` at the repository root), one entry per model::

    {"model": "qwen2.5-coder-0.5b-instruct", "prompt": "Name three primary colours.",
     "steps": 64, "instruct": true, "toolCalling": "What is 17 * 23?", "tool": "calculator"}

``model`` is an alias or a path (``~`` allowed), ``steps`` the tokens to generate. A base model
(``instruct: false``) continues ``prompt``; an instruct model answers it as a one-message chat.
With ``toolCalling``, one more run offers the built-in tools and asks that question; ``tool``
names the tool it must call (any tool when absent).

What makes a row OK:

* ``complete``: some text came out.
* ``chat``: the reply is non-empty, ended at end-of-turn (not at the token limit) and contains
  no template markup (no control-token text such as ``<|im_end|>`` or ``<tool_call>``).
* ``tools``: the expected tool was called and every call ran without an error, the loop ended
  with an answer in words, and the answer contains the tool's result (for a listing: one of
  its entries).

Rows: OK, WARN (it ran, but a check above failed), FAIL (an exception: the model or the engine is
broken) or SKIP (the model is not on this machine). Sampling is greedy, so a row is reproducible.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ggufref.errors import GGUFError, GgufrefError
from ggufref.model_files import ALIASES, known_model, pull_command, resolve_model

CONFIG_NAME = "smoke-models.json"
# key -> (type, required); bool is checked apart because isinstance(True, int) holds
FIELDS: dict[str, tuple[type, bool]] = {
    "model": (str, True),
    "prompt": (str, True),
    "steps": (int, True),
    "instruct": (bool, True),
    "toolCalling": (str, False),
    "tool": (str, False),
}


class SmokeConfigError(GgufrefError):
    """The smoke configuration file is missing, not JSON, or has a bad entry."""


@dataclass(frozen=True)
class SmokeEntry:
    model: str
    prompt: str
    steps: int
    instruct: bool
    tool_calling: str | None = None
    tool: str | None = None


@dataclass
class SmokeRow:
    model: str
    mode: str  # "complete", "chat", "tools" or "load"
    status: str  # OK, WARN, FAIL, SKIP
    reason: str = ""
    tokens: int = 0
    tok_s: float = 0.0
    wall_s: float = 0.0  # this run, model loading excluded
    load_s: float = 0.0
    text: str = ""


# --- the configuration ---------------------------------------------------------------------


def default_config() -> Path:
    """``./smoke-models.json`` if there is one, else the repository's own."""
    here = Path(CONFIG_NAME)
    if here.exists():
        return here
    return Path(__file__).resolve().parents[2] / CONFIG_NAME


def _check_entry(i: int, entry: Any) -> SmokeEntry:
    where = f"entry {i}"
    if not isinstance(entry, dict):
        raise SmokeConfigError(f"{where}: expected an object, found {type(entry).__name__}")
    unknown = sorted(set(entry) - set(FIELDS))
    if unknown:
        raise SmokeConfigError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(FIELDS)}")
    for key, (kind, required) in FIELDS.items():
        if key not in entry:
            if required:
                raise SmokeConfigError(f"{where}: missing key {key!r}")
            continue
        value = entry[key]
        is_bool = isinstance(value, bool)
        if not isinstance(value, kind) or (kind is not bool and is_bool):
            raise SmokeConfigError(
                f"{where}: {key!r} must be {kind.__name__}, found {json.dumps(value)[:40]}"
            )
    if entry["steps"] <= 0:
        raise SmokeConfigError(f"{where}: 'steps' must be > 0, found {entry['steps']}")
    if not entry["model"].strip():
        raise SmokeConfigError(f"{where}: 'model' is empty")
    return SmokeEntry(
        entry["model"],
        entry["prompt"],
        entry["steps"],
        entry["instruct"],
        entry.get("toolCalling"),
        entry.get("tool"),
    )


def load_config(path: str | os.PathLike[str]) -> list[SmokeEntry]:
    """Read and validate a smoke list; SmokeConfigError (one line) on any problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SmokeConfigError(f"{path}: cannot read ({err.__class__.__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SmokeConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, list) or not data:
        raise SmokeConfigError(f"{path}: expected a non-empty JSON list of model entries")
    try:
        return [_check_entry(i, e) for i, e in enumerate(data)]
    except SmokeConfigError as err:
        raise SmokeConfigError(f"{path}: {err}") from None


# --- running -------------------------------------------------------------------------------


def locate(model: str) -> Path | None:
    """The model file, or None when it is not there (an alias whose package is missing too)."""
    if model in ALIASES:
        try:
            return resolve_model(model, progress=False)
        except GGUFError:
            return None
    path = Path(model).expanduser()
    return path if path.is_file() else None


def _one_line(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _fail(model: str, mode: str, err: BaseException, t0: float) -> SmokeRow:
    reason = _one_line(f"{type(err).__name__}: {err}", 100)
    return SmokeRow(model, mode, "FAIL", reason, wall_s=time.perf_counter() - t0)


def _run_complete(engine: Any, entry: SmokeEntry) -> SmokeRow:
    from ggufref.sampling import GREEDY

    t0 = time.perf_counter()
    gen = engine.generate(engine.encode(entry.prompt), entry.steps, GREEDY)
    row = SmokeRow(
        entry.model,
        "complete",
        "OK",
        tokens=len(gen.tokens),
        tok_s=gen.timings.decode_tok_s,
        wall_s=time.perf_counter() - t0,
        text=gen.text,
    )
    if not gen.text.strip():
        row.status, row.reason = "WARN", "empty output"
    return row


def _run_chat(engine: Any, entry: SmokeEntry, with_tools: bool) -> SmokeRow:
    from ggufref.chat.session import ChatSession
    from ggufref.chat.tools import ToolRegistry, builtin_registry

    t0 = time.perf_counter()
    mode = "tools" if with_tools else "chat"
    with tempfile.TemporaryDirectory(prefix="ggufref-smoke-") as root:
        Path(root, "notes.txt").write_text("a file for list_files to find\n")
        registry = builtin_registry(root) if with_tools else ToolRegistry()
        session = ChatSession(
            engine,
            registry=registry,
            max_rounds=3 if with_tools else 1,
            max_tokens=entry.steps,
            enable_thinking=False,
        )
        question = entry.tool_calling if with_tools and entry.tool_calling else entry.prompt
        turn = session.ask(question)
    status, reason = judge(turn, with_tools, entry.tool, _control_tokens(engine))
    return SmokeRow(
        entry.model,
        mode,
        status,
        reason,
        tokens=turn.tokens,
        tok_s=turn.decode_tok_s,
        wall_s=time.perf_counter() - t0,
        text=turn.content,
    )


# Template markup that must never reach a user: the control-token text of the common template
# families, plus every control token of the model's own vocabulary (see _markup).
MARKUP = (
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|start_header_id|>",
    "<|eot_id|>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
)


def _markup(text: str, control_tokens: frozenset[str] = frozenset()) -> str | None:
    """The first piece of template markup in ``text``, or None."""
    for piece in (*MARKUP, *sorted(control_tokens)):
        if piece and piece in text:
            return piece
    return None


def _mentions_result(answer: str, result: str) -> bool:
    """Does the answer carry the tool's result? A number or word as is; a listing by one entry."""
    lines = [ln.strip().rstrip("/") for ln in result.splitlines() if ln.strip()]
    return any(ln and ln in answer for ln in lines)


# tag::judge[]
def _control_tokens(engine: Any) -> frozenset[str]:
    """The text of the model's control tokens (``<|endoftext|>``, ``<|im_start|>``, ...)."""
    tok = engine.tokenizer
    return frozenset(t for i, t in enumerate(tok.tokens) if t and tok.is_control(i))


def judge(
    turn: Any,
    with_tools: bool,
    expected_tool: str | None = None,
    control: frozenset[str] = frozenset(),
) -> tuple[str, str]:
    """(status, reason) of a chat run (a ``chat.session.Turn``), by the rules in the docstring."""
    result = turn.result
    calls = result.tool_calls if result else []
    messages = result.messages if result else []
    results = [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]
    last = turn.calls[-1] if turn.calls else None
    if not turn.content.strip():
        return "WARN", "empty reply" if not calls else "called tools but gave no answer"
    if last is not None and last.stop_reason == "length":
        return "WARN", "stopped at the token limit, not at end-of-turn"
    markup = _markup(turn.content, control)
    if markup:
        return "WARN", f"template markup in the reply: {markup}"
    if not with_tools:
        return "OK", ""
    names = [c.name for c in calls]
    if not calls or (expected_tool and expected_tool not in names):
        return "WARN", f"did not call {expected_tool or 'a tool'}"
    if any(r.startswith("error:") for r in results):
        return "WARN", "a tool call failed"
    if result is not None and not result.finished:
        return "WARN", f"no answer ({result.stop})"
    if not any(_mentions_result(turn.content, r) for r in results):
        return "WARN", "the answer does not contain the tool's result"
    return "OK", f"called {', '.join(names)}; {result.stop if result else ''}"


# end::judge[]


# tag::run_entry[]
def run_entry(entry: SmokeEntry, threads: int | None = None) -> list[SmokeRow]:
    """All the rows of one model: SKIP, or load then complete/chat (+ tools)."""
    path = locate(entry.model)
    if path is None:
        known = known_model(entry.model)
        reason = f"not downloaded: {pull_command(known)}" if known else "no such file"
        return [SmokeRow(entry.model, "-", "SKIP", reason)]
    from ggufref.generate import Engine

    t0 = time.perf_counter()
    try:
        engine = Engine(path, threads=threads, progress=False)
    except Exception as err:  # a model that does not load is the news this run exists for
        return [_fail(entry.model, "load", err, t0)]
    modes: list[tuple[str, Callable[[], SmokeRow]]] = [
        ("chat", lambda: _run_chat(engine, entry, False))
        if entry.instruct
        else ("complete", lambda: _run_complete(engine, entry))
    ]
    if entry.tool_calling:
        modes.append(("tools", lambda: _run_chat(engine, entry, True)))
    rows = []
    for mode, run in modes:
        t1 = time.perf_counter()
        try:
            row = run()
        except Exception as err:
            row = _fail(entry.model, mode, err, t1)
        row.load_s = engine.load_s
        rows.append(row)
    return rows


# end::run_entry[]


def run_smoke(
    entries: list[SmokeEntry],
    threads: int | None = None,
    on_row: Callable[[SmokeRow], None] | None = None,
) -> list[SmokeRow]:
    rows = []
    for entry in entries:
        for row in run_entry(entry, threads):
            rows.append(row)
            if on_row:
                on_row(row)
    return rows


# --- reporting -----------------------------------------------------------------------------

COLUMNS = ("model", "mode", "load s", "tokens", "tok/s", "wall s", "result")


def _cells(row: SmokeRow) -> list[str]:
    ran = row.status != "SKIP" and row.mode != "load"
    result = row.status + (f" ({row.reason})" if row.reason else "")
    return [
        row.model,
        row.mode,
        f"{row.load_s:.2f}" if row.load_s else "-",
        str(row.tokens) if ran else "-",
        f"{row.tok_s:.1f}" if ran else "-",
        f"{row.wall_s:.2f}" if row.wall_s else "-",
        result,
    ]


def format_table(rows: list[SmokeRow]) -> str:
    """A plain-text table, one row per run, columns padded to their widest cell."""
    cells = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    right = {2, 3, 4, 5}  # numbers line up on the right
    lines = []
    for n, line in enumerate(cells):
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def rows_as_json(rows: list[SmokeRow]) -> str:
    out = []
    for r in rows:
        d = asdict(r)
        d["tok_s"], d["wall_s"] = round(r.tok_s, 2), round(r.wall_s, 3)
        d["load_s"] = round(r.load_s, 3)
        out.append(d)
    return json.dumps(out, ensure_ascii=False, indent=1)


def exit_status(rows: list[SmokeRow], allow_missing: bool = False) -> int:
    """0 only when every row is OK (SKIP too, with ``allow_missing``); else 1."""
    allowed = {"OK", "SKIP"} if allow_missing else {"OK"}
    return 0 if all(r.status in allowed for r in rows) else 1
