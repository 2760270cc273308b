"""How well do the instruct models chat and call tools? One table per run, greedy.

    python tools/eval_agent.py                       # both instruct aliases, default system
    python tools/eval_agent.py -m qwen2.5-coder-0.5b-instruct --system ""

Each prompt has a check that reads the final answer (a number, a file name, a word); a row says
which tools were called, how many rounds the loop used, how it ended, whether the answer passed
the check, and the decode speed of the run. The prompts are three kinds a user tries first:
arithmetic (calculator), file listing (list_files over a fresh temporary directory), and plain
questions (no tools).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

FILES = ("README.md", "notes.txt", "src")


def _has(*words: str, least: int = 1) -> Callable[[str], bool]:
    return lambda answer: sum(w.lower() in answer.lower() for w in words) >= least


# (kind, tools, prompt, check of the final answer)
PROMPTS: list[tuple[str, str, str, Callable[[str], bool]]] = [
    ("arithmetic", "calculator", "What is 1234 * 5678?", _has("7006652", "7,006,652")),
    ("arithmetic", "calculator", "What is 17 * 23? Use the calculator.", _has("391")),
    ("arithmetic", "calculator", "What is the square root of 1764?", _has("42")),
    ("files", "list_files", "Which files are in the workspace?", _has(*FILES)),
    ("files", "list_files", "List the files in the workspace.", _has(*FILES)),
    ("plain", "", "Name three primary colours.", _has("red", "blue", "yellow", "green", least=2)),
    ("plain", "", "What is the capital of France?", _has("Paris")),
]


def run_model(alias: str, system: str | None, max_tokens: int) -> list[dict[str, Any]]:
    from ggufref.chat.session import ChatSession
    from ggufref.cli.chat_cmd import select_tools
    from ggufref.generate import Engine

    engine = Engine(alias, progress=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ggufref-eval-") as root:
        for name in FILES[:2]:
            Path(root, name).write_text("x\n")
        Path(root, FILES[2]).mkdir()
        for kind, tools, prompt, check in PROMPTS:
            registry = select_tools(tools, root) if tools else None
            session = ChatSession(engine, system=system, registry=registry, max_tokens=max_tokens)
            turn = session.ask(prompt)
            result = turn.result
            rows.append(
                {
                    "model": alias,
                    "kind": kind,
                    "prompt": prompt,
                    "calls": [f"{c.name}({json.dumps(c.arguments)})" for c in result.tool_calls]
                    if result
                    else [],
                    "rounds": result.rounds if result else len(turn.calls),
                    "stop": result.stop if result else "interrupted",
                    "correct": bool(check(turn.content)),
                    "decode_tok_s": round(turn.decode_tok_s, 2),
                    "answer": turn.content,
                }
            )
            print(_line(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _line(r: dict[str, Any]) -> str:
    answer = " ".join(r["answer"].split())[:70]
    ok = "yes" if r["correct"] else "NO"
    return (
        f"{r['model']:<28} {r['kind']:<10} rounds {r['rounds']} {r['stop']:<13} correct {ok:<3} "
        f"{r['decode_tok_s']:5.1f} tok/s  {','.join(r['calls'])[:60]:<60} {answer!r}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "-m",
        "--model",
        action="append",
        help="alias or path (repeatable; default: both instruct aliases)",
    )
    p.add_argument("--system", default=None, help="system message (default: the chat default)")
    p.add_argument("-n", type=int, default=160, help="tokens per reply at most")
    p.add_argument("--json", action="store_true", help="print all rows as JSON on stdout")
    args = p.parse_args(argv)
    aliases = args.model or ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"]
    rows = [r for a in aliases for r in run_model(a, args.system, args.n)]
    if args.json:
        print(json.dumps(rows, indent=1))
    for alias in aliases:
        mine = [r for r in rows if r["model"] == alias]
        for kind in ("arithmetic", "files", "plain"):
            got = [r for r in mine if r["kind"] == kind]
            print(
                f"{alias}: {kind}: {sum(r['correct'] for r in got)}/{len(got)} correct, "
                f"rounds {[r['rounds'] for r in got]}, stops {[r['stop'] for r in got]}",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
