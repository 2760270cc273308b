"""``ggufref chat [PROMPT]``: talk to a model through its chat template, with optional tools.

With PROMPT: answer once and exit (for scripts). Without: an interactive loop.
With PROMPT and ``--json``: nothing streams; one JSON object goes to stdout at the end (the reply,
the whole OpenAI-style conversation, how the loop ended, token counts and timings).

Output: the model's text streams to stdout as it is generated. Everything else goes to stderr:
tool activity, one line per call as it happens (``[tool] calculator({"expression": "2+2"}) -> 4``),
and a statistics line after each reply (``[prompt 57 tok, 41 cached | 23 tok, 40.1 tok/s]``),
ending with how the tool loop ended when tools were offered (answered / repeated call / max rounds).
So ``ggufref chat "..." 2>/dev/null`` prints only what the model wrote.

In the loop: ``/reset`` starts a new conversation, ``/exit`` (or Ctrl-D) quits, and Ctrl-C stops
the reply being generated; the partial reply stays in the history (see ``chat.session``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ggufref.chat.session import ChatSession, Turn
from ggufref.chat.tools import TOOL_SECONDS, ToolCall, ToolRegistry, calculator, make_list_files
from ggufref.cli.common import (
    add_model_arg,
    add_threads_arg,
    add_weights_arg,
    positive_int,
    utf8_text,
)
from ggufref.cli.generate_cmd import add_sampling_args, sampler_from_args
from ggufref.errors import GgufrefError, ToolCallError

HELP = "commands: /reset (new conversation), /exit (or Ctrl-D); Ctrl-C stops a reply"
RESULT_CHARS = 120  # a tool result is shown on one line, cut to this many characters


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat through the model's template (one-shot or interactive)")
    add_model_arg(p)
    p.add_argument(
        "prompt",
        nargs="?",
        default=None,
        help="answer this one message and exit (omit for an interactive session)",
    )
    p.add_argument(
        "--system",
        default=None,
        type=utf8_text,
        help="a system message (with --tools the default asks the model to answer once a tool "
        "has returned; --system '' sends none)",
    )
    p.add_argument(
        "--tools",
        default="",
        metavar="NAMES",
        help="comma-separated built-in tools to offer: calculator, list_files",
    )
    p.add_argument(
        "--tools-root",
        default=".",
        metavar="DIR",
        help="the only directory list_files can see (default: the current one)",
    )
    p.add_argument(
        "--max-rounds",
        type=positive_int,
        default=4,
        help="model calls per message, tool rounds included (default 4); the answer round "
        "after a repeated call is not counted",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="with PROMPT: print one JSON object (content, messages, rounds, finished, stop, "
        "usage, timings) instead of streaming text",
    )
    p.add_argument(
        "--no-think",
        action="store_true",
        help="ask templates that support it to skip the reasoning block",
    )
    p.add_argument(
        "-n",
        "--n-predict",
        type=positive_int,
        default=256,
        dest="n",
        help="tokens per reply at most (default 256)",
    )
    p.add_argument(
        "--ctx",
        type=positive_int,
        default=None,
        help="context size (default 1024, or the model's trained context if smaller)",
    )
    add_threads_arg(p)
    add_weights_arg(p)
    add_sampling_args(p, temperature=0.7)
    p.set_defaults(func=run)


def select_tools(names: str, root: str) -> ToolRegistry:
    """The built-in tools named in ``--tools``; ToolCallError for a name we do not have."""
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    available: dict[str, Callable[..., str]] = {
        "calculator": calculator,
        "list_files": make_list_files(root),
    }
    registry = ToolRegistry()
    for name in wanted:
        if name not in available:
            raise ToolCallError(
                f"unknown tool {name!r} in --tools; available: {', '.join(available)}"
            )
        registry.register(available[name], name=name, timeout=TOOL_SECONDS)  # killed at the bound
    return registry


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= RESULT_CHARS else flat[: RESULT_CHARS - 3] + "..."


def print_event(kind: str, payload: Any) -> None:
    """The agent loop's events: text to stdout, tool activity to stderr."""
    if kind == "text":
        sys.stdout.write(payload)
        sys.stdout.flush()
        return
    if kind in ("tool_call", "repeated_call"):
        assert isinstance(payload, ToolCall)
        args = json.dumps(payload.arguments, ensure_ascii=False)
        sys.stdout.write("\n")
        sys.stdout.flush()
        tail = " -> " if kind == "tool_call" else " again: not run; answering without tools\n"
        sys.stderr.write(f"[tool] {payload.name}({args}){tail}")
    elif kind == "tool_result":
        sys.stderr.write(_one_line(payload["content"]) + "\n")
    elif kind == "parse_error":
        sys.stdout.write("\n")
        sys.stdout.flush()
        sys.stderr.write(f"[tool] could not parse a call: {_one_line(payload)}\n")
    sys.stderr.flush()


def stats_line(turn: Turn) -> str:
    parts = []
    for c in turn.calls:
        done = f"{c.tokens} tok, {c.decode_tok_s:.1f} tok/s" if c.stop_reason else "stopped"
        parts.append(f"prompt {c.prompt_tokens} tok, {c.reused_tokens} cached | {done}")
    line = "[" + " ; ".join(parts) + "]"
    if turn.interrupted:
        line += " (interrupted)"
    if turn.context_full:
        line += " (the context is full: /reset to start a new conversation)"
    if turn.result is not None and turn.tools_offered:
        rounds = turn.result.rounds
        line += f" [{ENDINGS[turn.result.stop]} after {rounds} round{'s' * (rounds != 1)}]"
    return line


ENDINGS = {
    "answered": "answered",
    "repeated_call": "repeated call, answered without tools",
    "max_rounds": "max rounds reached without an answer",
}


def _finish_reply(turn: Turn) -> None:
    sys.stdout.write("\n")
    sys.stdout.flush()
    sys.stderr.write(stats_line(turn) + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from ggufref.generate import Engine

    registry = select_tools(args.tools, args.tools_root)  # before loading: fail fast
    if args.json and args.prompt is None:
        raise ToolCallError("--json needs a PROMPT (it prints one answer as one JSON object)")
    engine = Engine(args.model, n_ctx=args.ctx, threads=args.threads, weights=args.weights)
    session = ChatSession(
        engine,
        system=args.system,
        registry=registry,
        sampler=sampler_from_args(args),
        max_rounds=args.max_rounds,
        max_tokens=args.n,
        enable_thinking=not args.no_think,
        on_event=_quiet_event if args.json else print_event,
    )
    if args.prompt is not None:
        turn = session.ask(args.prompt)
        if args.json:
            print(json.dumps(turn_json(turn, engine.load_s), ensure_ascii=False, indent=1))
        else:
            _finish_reply(turn)
        return 130 if turn.interrupted else 0
    return repl(session)


def _quiet_event(kind: str, payload: Any) -> None:
    """With --json nothing streams; tool activity still goes to stderr, one line each."""
    if kind != "text":
        print_event(kind, payload)


# tag::chat_json[]
def openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation as OpenAI's chat API writes it: tool-call arguments as JSON strings."""
    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {
                        "name": c["function"]["name"],
                        "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for c in m["tool_calls"]
            ]
        out.append(m)
    return out


def turn_json(turn: Turn, load_s: float) -> dict[str, Any]:
    """``chat --json``: the answer, the conversation, how it ended, tokens and timings."""
    result = turn.result
    last = turn.calls[-1] if turn.calls else None
    stop = "interrupted" if turn.interrupted else (result.stop if result else "answered")
    return {
        "content": turn.content,
        "messages": openai_messages(result.messages if result else []),
        "rounds": result.rounds if result else len(turn.calls),
        "finished": bool(result and result.finished and not turn.interrupted),
        "stop": stop,
        "finish_reason": last.stop_reason if last else "",  # of the last completion
        "tool_calls": len(result.tool_calls) if result else 0,
        "usage": {
            "prompt_tokens": sum(c.prompt_tokens for c in turn.calls),
            "cached_prompt_tokens": sum(c.reused_tokens for c in turn.calls),
            "completion_tokens": turn.tokens,
        },
        "timings": {
            "load_s": round(load_s, 3),
            "prefill_s": round(sum(c.prefill_s for c in turn.calls), 3),
            "decode_s": round(turn.decode_s, 3),
            "decode_tok_s": round(turn.decode_tok_s, 2),
        },
    }


# end::chat_json[]


# tag::repl[]
def repl(session: ChatSession) -> int:
    """Read a line, answer it, repeat; errors are printed and the session goes on."""
    if sys.stdin.isatty():
        import readline  # noqa: F401 - gives input() line editing and history

    sys.stderr.write(
        f"ggufref chat: {session.engine.path.name}, template "
        f"{session.template.name}, context {session.engine.n_ctx} tokens. "
        f"{HELP}\n"
    )
    while True:
        try:
            line = input("> ").strip()
        except EOFError:
            sys.stdout.write("\n")
            return 0
        except KeyboardInterrupt:
            sys.stdout.write("\n(Ctrl-D or /exit to quit)\n")
            continue
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/reset":
            session.reset()
            sys.stderr.write("(new conversation)\n")
            continue
        if line.startswith("/") and " " not in line:
            sys.stderr.write(f"unknown command {line}; {HELP}\n")
            continue
        try:
            turn = session.ask(line)
        except GgufrefError as err:
            sys.stdout.write("\n")
            sys.stdout.flush()
            sys.stderr.write(f"error: {err}\n(type /reset to start a new conversation)\n")
            continue
        _finish_reply(turn)


# end::repl[]
