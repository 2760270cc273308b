"""The agent loop: render -> complete -> parse -> run tools -> feed results back -> repeat.

Stage: the last one. It ties ``template.py`` (messages -> prompt), a model (prompt -> text) and
``tools.py`` (text -> tool calls -> results) together, and knows nothing about the engine:
any object with a ``complete`` method will do (the CLI wraps ``generate``; tests script one).

One round is one completion. A reply with tool calls adds an assistant message (with
``tool_calls``) and one ``role: tool`` message per call; a malformed call or an unknown tool
becomes a tool message reading ``error: ...`` so the model can correct itself.

How the loop ends (``AgentResult.stop``):

* ``answered``: the model replied without calling a tool.
* ``repeated_call``: the model's reply opened with a call it had already made (same name,
  same arguments). Small instruct models do this after a tool result: greedy llama.cpp on
  Qwen2.5-Coder 1.5B re-issues the identical calculator call in every round. The repeat is not
  run and is not kept; instead one last round renders the same conversation *without offering
  tools*, so the template does not invite another call, and that reply is the answer.
* ``max_rounds``: every round asked for new calls; the last reply's text is what there is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ggufref.chat.template import ChatTemplate
from ggufref.chat.tools import ParsedReply, ToolCall, ToolRegistry, parse_reply, tool_call_style

# The system message offered when tools are on and the user gave none. The template's own default
# line ("You are Qwen, ... a helpful assistant.") leaves greedy Qwen2.5-Coder re-issuing the same
# call after every tool result; told to answer once a result is in, it answers in words.
# Only the *content* of a system message: the template's own wording is never edited.
TOOL_SYSTEM_PROMPT = (
    "You are a helpful assistant. Call a tool only when you need its result. Once a tool has "
    "returned its result, answer the user in words using that result instead of calling the "
    "tool again."
)

# on_event(kind, payload): "text" (str chunk), "reasoning" (str), "tool_call" (ToolCall),
# "tool_result" (dict: name, tool_call_id, content, ok), "parse_error" (str),
# "repeated_call" (ToolCall: asked for again, not run).
EventHandler = Callable[[str, Any], None]


class Completer(Protocol):
    """Anything that continues a prompt: the engine, llama.cpp, a scripted fake."""

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: list[str],
        on_text: Callable[[str], None] | None,
        answer_only: bool = False,
        stop_when: Callable[[str], bool] | None = None,
    ) -> str:
        """``answer_only``: the reply must start in words, not with a tool call.
        ``stop_when(text)``: a completer that streams may stop early when it returns True."""
        ...


@dataclass
class AgentResult:
    """How the loop ended and the whole conversation, new messages included."""

    content: str  # the last assistant reply's visible text
    messages: list[dict[str, Any]]
    rounds: int  # completions asked of the model
    finished: bool  # True: the loop ended with an answer in words; False: max_rounds hit
    reasoning: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)  # every call run, in order
    stop: str = "answered"  # "answered", "repeated_call" or "max_rounds"


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first stop string (completers may or may not include it)."""
    cuts = [text.find(s) for s in stop if s and s in text]
    return text[: min(cuts)] if cuts else text


def _assistant_message(reply: ParsedReply, raw: str) -> dict[str, Any]:
    # With parse errors only, keep what the model wrote so it can see its mistake.
    content = reply.content if (reply.tool_calls or not reply.errors) else raw.strip()
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.tool_calls:
        message["tool_calls"] = [c.to_message_dict() for c in reply.tool_calls]
    if reply.reasoning:
        message["reasoning_content"] = reply.reasoning
    return message


def _tool_message(name: str, call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "name": name, "tool_call_id": call_id, "content": content}


def looping(text: str) -> bool:
    """The reply has started writing bare-JSON call lines over and over.

    Asked at each line break: a complete ``{...}`` line that already appeared earlier in the
    reply is enough (small models repeat one call, or alternate between two), since what follows
    is more of the same up to the token limit (see ``salvage_calls``).
    """
    lines = [ln.strip() for ln in text.split("\n")[:-1] if ln.strip()]
    return len(lines) >= 2 and lines[-1].startswith("{") and lines[-1] in lines[:-1]


def salvage_calls(content: str) -> list[ToolCall]:
    """A call written as a bare JSON line outside the taught format, in a reply cut off mid-way.

    After a tool result, greedy Qwen2.5-Coder 0.5B writes ``{"name": ..., "arguments": ...}``
    line after line (``looping`` stops it), so the reply as a whole does not parse. Its first
    line is the call it meant to make; the lines after it are the loop, not further requests.
    Text that does not open with such a line is an answer and is left alone.
    """
    first = content.strip().split("\n", 1)[0].strip()
    if not first.startswith('{"name"'):
        return []
    parsed = parse_reply(first, "llama3")
    return parsed.tool_calls[:1] if not parsed.errors else []


def call_key(call: ToolCall) -> str:
    """Two calls are the same call when name and arguments are equal (key order ignored)."""
    return call.name + json.dumps(call.arguments, sort_keys=True, ensure_ascii=False)


def _run_calls(
    calls: Sequence[ToolCall],
    errors: Sequence[str],
    registry: ToolRegistry,
    emit: EventHandler,
) -> list[dict[str, Any]]:
    """Run every parsed call; one tool message per call and per parse error."""
    results = []
    for call in calls:
        emit("tool_call", call)
        content, ok = registry.run(call)
        emit(
            "tool_result",
            {"name": call.name, "tool_call_id": call.id, "content": content, "ok": ok},
        )
        results.append(_tool_message(call.name, call.id, content))
    for err in errors:
        emit("parse_error", err)
        hint = f"error: {err}. Call tools exactly in the format shown in the instructions."
        results.append(_tool_message("tool_call_parser", "", hint))
    return results


# tag::run_agent[]
def run_agent(
    completer: Completer,
    template: ChatTemplate,
    messages: Sequence[Mapping[str, Any]],
    registry: ToolRegistry,
    *,
    max_rounds: int = 4,
    max_tokens: int = 256,
    on_event: EventHandler | None = None,
    enable_thinking: bool = True,
    style: str | None = None,
) -> AgentResult:
    """Talk to the model until it answers without calling a tool (or ``max_rounds``).

    ``style`` is the tool-call format to parse ("hermes", "llama3", "pythonic"); by default
    it is read off the template, and "auto" guesses from each reply.
    """
    emit: EventHandler = on_event or (lambda kind, payload: None)
    style = style or tool_call_style(template.source)
    stop = template.stop_strings()
    tools = registry.schemas() or None
    convo = [dict(m) for m in messages]
    executed: list[ToolCall] = []
    seen: set[str] = set()  # call_key of every call run so far
    streamed: list[str] = []

    def on_text(chunk: str) -> None:
        streamed.append(chunk)
        emit("text", chunk)

    def ask(offer_tools: bool) -> tuple[ParsedReply, str]:
        prompt = template.render(
            convo, tools=tools if offer_tools else None, enable_thinking=enable_thinking
        )
        streamed.clear()
        raw = completer.complete(
            prompt,
            max_tokens=max_tokens,
            stop=stop,
            on_text=on_text,
            answer_only=not offer_tools,
            stop_when=looping if offer_tools else None,
        )
        if not streamed and raw:
            emit("text", raw)  # a completer that does not stream still shows its text
        raw = cut_at_stop(raw, stop)
        reply = parse_reply(raw, style)
        if offer_tools and not reply.tool_calls:
            reply.tool_calls = salvage_calls(reply.content)
            reply.content = "" if reply.tool_calls else reply.content
        if reply.reasoning:
            emit("reasoning", reply.reasoning)
        return reply, raw

    reply = ParsedReply(content="")
    for round_no in range(1, max_rounds + 1):
        reply, raw = ask(offer_tools=True)
        if not reply.tool_calls and not reply.errors:
            convo.append(_assistant_message(reply, raw))
            return AgentResult(reply.content, convo, round_no, True, reply.reasoning, executed)
        repeats = bool(reply.tool_calls) and call_key(reply.tool_calls[0]) in seen
        if repeats and not reply.errors:
            # The reply opens with a call already run: the model is looping (what follows it,
            # if anything, is the loop, often alternating with another call). Run nothing, keep
            # nothing, and ask once more with tools withdrawn. This answer round does not count
            # against max_rounds (the repeat wasted nothing).
            emit("repeated_call", reply.tool_calls[0])
            reply, raw = ask(offer_tools=False)
            answer = ParsedReply(reply.content, reply.reasoning)  # calls written anyway: dropped
            convo.append(_assistant_message(answer, raw))
            return AgentResult(
                reply.content,
                convo,
                round_no + 1,
                bool(reply.content),
                reply.reasoning,
                executed,
                "repeated_call",
            )
        fresh: list[ToolCall] = []  # not run before, nor named earlier in this reply
        for call in reply.tool_calls:
            if call_key(call) not in seen:
                seen.add(call_key(call))
                call.id = f"call_{round_no}_{len(fresh)}"  # unique over the conversation
                fresh.append(call)
        reply.tool_calls = fresh
        convo.append(_assistant_message(reply, raw))
        convo.extend(_run_calls(fresh, reply.errors, registry, emit))
        executed.extend(fresh)
    return AgentResult(
        reply.content, convo, max_rounds, False, reply.reasoning, executed, "max_rounds"
    )


# end::run_agent[]
