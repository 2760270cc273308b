"""Chat templates: OpenAI-style messages -> the prompt string a model was trained on.

Stage: ``messages -> chat/template.py -> prompt -> tokenizer``.

A GGUF usually carries its chat template as Jinja source in ``tokenizer.chat_template``
(and sometimes named variants such as ``tokenizer.chat_template.tool_use``).
We render it exactly as Hugging Face's ``apply_chat_template`` would, inside the bounded
sandbox of ``sandbox.py`` (templates are untrusted code).
When the file has no template (our default Gemma 3 270M base model has none), a built-in
fallback from ``ggufref/templates/`` is chosen by the architecture table's template family
(``ggufref.arch``).

The rendered prompt often starts with the BOS token *as text* (``{{ bos_token }}``);
the tokenizer must then not add a second BOS: see ``begins_with_bos``.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Any

from ggufref.arch import template_family
from ggufref.chat.sandbox import MAX_SOURCE_CHARS, RENDER_SECONDS, render_in_worker
from ggufref.errors import TemplateError

# Strings that end an assistant turn in the template families we know; generation stops there.
END_OF_TURN_MARKERS = (
    "<end_of_turn>",  # Gemma
    "<|im_end|>",  # ChatML, Qwen
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3.1, after a built-in tool call
    "<|end_of_text|>",  # Llama 3 EOS
    "<|endoftext|>",  # Qwen EOS
    "<|end|>",  # Phi 3
)

# Built-in fallbacks: family -> (file, default bos, default eos).
FALLBACKS: dict[str, tuple[str, str, str]] = {
    "gemma": ("gemma.jinja", "<bos>", "<eos>"),
    "chatml": ("chatml.jinja", "", "<|im_end|>"),
    "llama3": ("llama3.jinja", "<|begin_of_text|>", "<|eot_id|>"),
}

TEMPLATE_KEY = "tokenizer.chat_template"


# --- messages ------------------------------------------------------------------------------


def _arguments_as_dict(arguments: Any) -> Any:
    """Tool-call arguments as a dict when they are a JSON object string (OpenAI sends strings).

    Templates differ: Llama 3 writes ``arguments | tojson`` (a string would be quoted twice),
    Qwen accepts either. A dict is what transformers documents, so we pass dicts.
    """
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
        return parsed if isinstance(parsed, dict) else arguments
    return {} if arguments is None else arguments


def _normalize_call(call: Any) -> dict[str, Any]:
    """One tool call in OpenAI shape ``{"id"?, "type": "function", "function": {...}}``."""
    if not isinstance(call, Mapping):  # e.g. tools.ToolCall
        call = {
            "id": getattr(call, "id", None),
            "function": {"name": call.name, "arguments": call.arguments},
        }
    fn = call.get("function", call)
    out: dict[str, Any] = {
        "type": "function",
        "function": {"name": fn.get("name"), "arguments": _arguments_as_dict(fn.get("arguments"))},
    }
    if call.get("id"):
        out["id"] = call["id"]
    return out


# tag::normalize[]
def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Copies of ``messages`` in the shape real templates can digest.

    - ``content: None`` (an assistant turn that only calls tools) becomes ``""``:
      templates do ``message.content + ...`` and ``None`` would fail.
    - ``tool_calls`` arguments become dicts; an empty ``tool_calls`` list is dropped,
      because Llama 3 tests ``'tool_calls' in message`` and then demands exactly one call.
    - No key is added that the caller did not give, for the same reason.
    """
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise TemplateError(f"message {i} needs a 'role' string, got {message!r:.80}")
        msg = dict(message)
        if msg.get("content") is None:
            msg["content"] = ""
        elif isinstance(msg["content"], int | float):
            msg["content"] = str(msg["content"])
        if "tool_calls" in msg:
            if msg["tool_calls"]:
                msg["tool_calls"] = [_normalize_call(c) for c in msg["tool_calls"]]
            else:
                del msg["tool_calls"]
        out.append(msg)
    return out


# end::normalize[]


# --- BOS handling --------------------------------------------------------------------------


def begins_with_bos(text: str, bos_token: str) -> bool:
    """True when the rendered prompt already starts with BOS (the tokenizer must not add one)."""
    return bool(bos_token) and text.startswith(bos_token)


def strip_leading_bos(text: str, bos_token: str) -> str:
    """``text`` without one leading BOS, for tokenizers that always add their own."""
    return text[len(bos_token) :] if begins_with_bos(text, bos_token) else text


# --- metadata helpers ----------------------------------------------------------------------


def _as_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _token_text(metadata: Mapping[str, Any], id_key: str) -> str | None:
    """The text of the special token whose id is stored under ``id_key``, if both exist."""
    token_id = metadata.get(id_key)
    tokens = metadata.get("tokenizer.ggml.tokens")
    if token_id is None or tokens is None:
        return None
    try:
        return _as_str(tokens[int(token_id)])
    except (IndexError, TypeError, ValueError):
        return None


def template_names(metadata: Mapping[str, Any]) -> list[str]:
    """Named template variants in the file (``tool_use``, ``rag``...), default excluded."""
    prefix = TEMPLATE_KEY + "."
    return sorted(k[len(prefix) :] for k in metadata if k.startswith(prefix))


def fallback_family(arch: str, metadata: Mapping[str, Any] | None = None) -> str:
    """Which built-in template fits an architecture that shipped without one.

    The family is the architecture table's (``ggufref.arch.template_family``); ChatML when the
    table does not know the architecture.
    """
    family = template_family(arch)
    if family == "llama3":
        tokens = (metadata or {}).get("tokenizer.ggml.tokens")
        # "llama" covers Llama 2, Mistral and Llama 3 alike; only Llama 3 has header tokens.
        if tokens is not None and "<|start_header_id|>" not in list(tokens):
            return "chatml"
    return family or "chatml"


def builtin_source(family: str) -> str:
    """The Jinja source of one of our fallback templates (package data)."""
    if family not in FALLBACKS:
        raise TemplateError(f"no built-in chat template {family!r}; have {sorted(FALLBACKS)}")
    ref = resources.files("ggufref") / "templates" / FALLBACKS[family][0]
    return ref.read_text(encoding="utf-8")


# --- where the messages landed -------------------------------------------------------------


class RenderedPrompt(str):
    """A rendered prompt: a plain ``str`` that also carries ``content_spans``, the
    ``(start, end)`` character ranges where message contents were written.

    Only the template's own text may become control tokens; text inside these spans came from
    a user, a tool or the model, and is tokenized as plain text (``Engine.encode_rendered``).
    """

    content_spans: tuple[tuple[int, int], ...]

    def __new__(cls, text: str, spans: tuple[tuple[int, int], ...] = ()) -> RenderedPrompt:
        obj = super().__new__(cls, text)
        obj.content_spans = spans
        return obj


# tag::content_spans[]
def content_spans(text: str, messages: Sequence[Mapping[str, Any]]) -> tuple[tuple[int, int], ...]:
    """Where the messages' untrusted strings may sit in ``text``.

    Templates write messages, and each message's strings, in order. Searching forwards gives
    each string's earliest possible place, searching backwards its latest; the true one lies
    between, so every occurrence between the two is marked. A string that is also template
    text nearby (a message of exactly ``<|im_end|>``) may so mark the template's own token as
    text, never the reverse. A string the template changed is searched stripped; one not
    found (a template that drops system messages) is skipped.
    """
    pieces = [p for m in messages for p in _message_texts(m)]
    first = _place(text, pieces, forward=True)
    last = _place(text, pieces[::-1], forward=False)[::-1]
    spans = []
    for lo, hi in zip(first, last, strict=True):
        if lo is None or hi is None:
            continue
        start = lo[0]
        while 0 <= start <= hi[0]:
            spans.append((start, start + lo[1]))
            start = text.find(text[lo[0] : lo[0] + lo[1]], start + 1)
    return tuple(sorted(spans))


def _place(text: str, pieces: list[str], forward: bool) -> list[tuple[int, int] | None]:
    """Greedy placement of ``pieces`` in order (forward) or in reverse order (backward):
    ``(start, length)`` per piece, trying each piece whole, then stripped."""
    out: list[tuple[int, int] | None] = []
    bound = 0 if forward else len(text)
    for piece in pieces:
        hit = None
        for candidate in (piece, piece.strip()):
            if not candidate:
                continue
            at = text.find(candidate, bound) if forward else text.rfind(candidate, 0, bound)
            if at >= 0:
                hit = (at, len(candidate))
                bound = at + len(candidate) if forward else at
                break
        out.append(hit)
    return out


# end::content_spans[]


def _message_texts(message: Mapping[str, Any]) -> list[str]:
    """The untrusted strings of one message: content (a string or text parts), reasoning,
    tool-call names and the string values of their arguments."""
    out: list[str] = []
    content = message.get("content")
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        out += [p["text"] for p in content if isinstance(p, Mapping) and _is_str(p.get("text"))]
    out += [message[k] for k in ("reasoning_content", "thinking") if _is_str(message.get(k))]
    for call in message.get("tool_calls") or []:
        fn = call.get("function", {}) if isinstance(call, Mapping) else {}
        args = fn.get("arguments") if isinstance(fn, Mapping) else None
        out += [str(fn["name"])] if _is_str(fn.get("name")) else []
        if isinstance(args, Mapping):
            out += [v for v in args.values() if _is_str(v)]
        elif _is_str(args):
            out.append(str(args))
    return out


def _is_str(x: Any) -> bool:
    return isinstance(x, str) and bool(x)


# --- the template --------------------------------------------------------------------------


class ChatTemplate:
    """A compiled chat template plus the special tokens it refers to.

    >>> t = ChatTemplate("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}",
    ...                  bos_token="<s>", eos_token="</s>")
    >>> t.render([{"role": "user", "content": "hi"}])
    '<user>hi'
    """

    def __init__(
        self,
        source: str,
        bos_token: str = "",
        eos_token: str = "",
        name: str = "gguf",
        *,
        now: Callable[[], _dt.datetime] | None = None,
        timeout: float = RENDER_SECONDS,
    ) -> None:
        if not isinstance(source, str) or not source.strip():
            raise TemplateError(f"chat template {name!r} is empty")
        if len(source) > MAX_SOURCE_CHARS:
            raise TemplateError(
                f"chat template {name!r} has {len(source)} characters, limit is {MAX_SOURCE_CHARS}"
            )
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.name = name
        self._now = now or _dt.datetime.now
        self.timeout = timeout
        render_in_worker(source, None, timeout)  # compile now: syntax errors show at load

    # tag::render[]
    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        add_generation_prompt: bool = True,
        enable_thinking: bool = True,
        **extra: Any,
    ) -> RenderedPrompt:
        """The prompt text for ``messages`` (OpenAI-style dicts) and optional tool schemas.

        ``extra`` reaches the template as further variables (``date_string``,
        ``tools_in_user_message``, ``reasoning_effort``...), as in transformers.
        The result is a ``str`` that also knows where each message's content landed
        (``RenderedPrompt.content_spans``), so that text cannot become control tokens.
        """
        normalized = normalize_messages(messages)
        context = {
            **extra,
            "messages": normalized,
            "tools": list(tools) if tools else None,
            "add_generation_prompt": add_generation_prompt,
            "enable_thinking": enable_thinking,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "__now__": self._now(),
        }
        text = render_in_worker(self.source, context, self.timeout)
        return RenderedPrompt(text, content_spans(text, normalized))

    # end::render[]

    @property
    def end_of_turn_tokens(self) -> list[str]:
        """End-of-turn markers this template writes, then EOS: where generation should stop."""
        found = [m for m in END_OF_TURN_MARKERS if m in self.source]
        if self.eos_token and self.eos_token not in found:
            found.append(self.eos_token)
        return found

    def stop_strings(self) -> list[str]:
        """Stop strings for ``Completer.complete``."""
        return list(self.end_of_turn_tokens)

    def begins_with_bos(self, prompt: str) -> bool:
        return begins_with_bos(prompt, self.bos_token)

    @classmethod
    def builtin(cls, family: str, bos_token: str | None = None, eos_token: str | None = None):
        """One of our fallback templates, with its family's default special tokens."""
        _, bos, eos = FALLBACKS.get(family, ("", "", ""))
        return cls(
            builtin_source(family),
            bos_token if bos_token is not None else bos,
            eos_token if eos_token is not None else eos,
            name=f"builtin:{family}",
        )

    # tag::for_model[]
    @classmethod
    def for_model(
        cls, metadata: Mapping[str, Any], arch: str, variant: str | None = None
    ) -> ChatTemplate:
        """The GGUF's own template (or its named ``variant``), else a built-in by ``arch``.

        ``metadata`` maps GGUF keys to Python values (strings, ints, the token list).
        """
        key = f"{TEMPLATE_KEY}.{variant}" if variant else TEMPLATE_KEY
        source = _as_str(metadata.get(key))
        bos = _token_text(metadata, "tokenizer.ggml.bos_token_id")
        eos = _token_text(metadata, "tokenizer.ggml.eos_token_id")
        if source:
            return cls(source, bos or "", eos or "", name=key)
        if variant:
            have = template_names(metadata)
            raise TemplateError(f"model has no chat template {variant!r}; named ones: {have}")
        return cls.builtin(fallback_family(arch, metadata), bos, eos)

    # end::for_model[]

    def __repr__(self) -> str:
        return f"ChatTemplate(name={self.name!r}, bos={self.bos_token!r}, eos={self.eos_token!r})"
