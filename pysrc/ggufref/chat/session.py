"""A chat session on the engine: history, template, tools, KV-cache reuse, interruption.

Stage: the last one, as seen from a user. ``ChatSession.ask(text)`` renders the whole
conversation with the model's chat template, runs the agent loop (``agent.run_agent``) with
``EngineCompleter`` as its model, and keeps the new messages for the next turn.

Every turn re-renders the full history, so the prompt of turn n+1 starts with the prompt and
reply of turn n. ``Engine._prefill`` notices the shared prefix and prefills only the new tokens;
``CompletionStats.reused_tokens`` records how many came from the cache.

Ctrl-C (KeyboardInterrupt) inside a reply stops that reply only: the user's message and the text
streamed so far in the current round stay in the history as the assistant's answer (tool rounds
finished before the interrupt are not kept); with nothing streamed yet, the turn is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ggufref.chat.agent import TOOL_SYSTEM_PROMPT, AgentResult, EventHandler, cut_at_stop, run_agent
from ggufref.chat.template import TEMPLATE_KEY, ChatTemplate
from ggufref.chat.tools import ToolRegistry, split_reasoning
from ggufref.generate import Engine, common_prefix
from ggufref.sampling import GREEDY, SamplerConfig

# A control token that opens a turn, met inside a reply, means the model has started writing the
# next turn itself (base models do): generation stops there, as on end-of-turn.
TURN_OPENERS = ("<start_of_turn>", "<|im_start|>", "<|start_header_id|>")


@dataclass
class CompletionStats:
    """One call of the model: one round of the agent loop."""

    prompt_tokens: int
    reused_tokens: int  # prompt tokens whose K/V the cache already held (not prefilled again)
    tokens: int = 0  # generated
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_tok_s: float = 0.0  # as Engine measures it: forward passes after the prefill
    stop_reason: str = ""
    context_full: bool = False  # the reply stopped because the context has no room left

    @property
    def new_tokens(self) -> int:
        return self.prompt_tokens - self.reused_tokens


# tag::engine_completer[]
class EngineCompleter:
    """The agent loop's Completer on top of ``Engine.generate``, with sampling and statistics.

    The prompt is encoded with ``Engine.encode_rendered`` (special tokens parsed, no second
    BOS). The reply is capped at the room left in
    the context; a prompt that does not fit raises ModelError.
    """

    def __init__(
        self,
        engine: Engine,
        sampler: SamplerConfig = GREEDY,
        extra_stop_ids: frozenset[int] = frozenset(),
    ):
        self.engine = engine
        self.sampler = sampler
        self.stop_ids = frozenset(engine.tokenizer.eot_ids) | extra_stop_ids
        self.calls: list[CompletionStats] = []

    def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        stop: list[str],
        on_text: Callable[[str], None] | None = None,
        answer_only: bool = False,
        stop_when: Callable[[str], bool] | None = None,
    ) -> str:
        engine = self.engine
        ids = engine.encode_rendered(prompt)  # (n_prompt,)
        engine.check_fits(len(ids), 1)
        room = engine.n_ctx - len(ids)
        # the engine always recomputes the last prompt position, hence len(ids) - 1
        reused = min(common_prefix(engine.cached_tokens, ids), len(ids) - 1)
        stats = CompletionStats(prompt_tokens=len(ids), reused_tokens=reused)
        self.calls.append(stats)
        gen = engine.generate(
            ids,
            min(max_tokens, room),
            self.sampler,
            stop_ids=self.stop_ids,
            stop_strings=stop,
            on_text=on_text,
            ban_first=engine.tokenizer.non_word_starts() if answer_only else None,
            stop_when=stop_when,
        )
        stats.tokens = len(gen.tokens)
        stats.prefill_s, stats.decode_s = gen.timings.prefill_s, gen.timings.decode_s
        stats.decode_tok_s = gen.timings.decode_tok_s
        stats.stop_reason = gen.stop_reason
        stats.context_full = gen.stop_reason == "length" and len(gen.tokens) >= room
        return cut_at_stop(gen.text, stop)

    # end::engine_completer[]


def template_metadata(engine: Engine) -> dict[str, Any]:
    """The few GGUF keys ``ChatTemplate.for_model`` reads (without copying the whole vocab)."""
    f = engine.file
    wanted = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")
    meta = f.with_prefix(TEMPLATE_KEY) | {k: f.get(k) for k in wanted if k in f}
    meta["tokenizer.ggml.tokens"] = engine.tokenizer.tokens
    return meta


@dataclass
class Turn:
    """What one ``ask`` produced."""

    content: str
    interrupted: bool = False
    result: AgentResult | None = None
    calls: list[CompletionStats] = field(default_factory=list)
    tools_offered: bool = False

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    @property
    def decode_s(self) -> float:
        return sum(c.decode_s for c in self.calls)

    @property
    def decode_tok_s(self) -> float:
        """Decode speed over every round: forward passes after the prefills, per second."""
        decoded = sum(max(c.tokens - 1, 0) for c in self.calls)
        return decoded / self.decode_s if self.decode_s else 0.0

    @property
    def context_full(self) -> bool:
        return any(c.context_full for c in self.calls)


# tag::chat_session[]
class ChatSession:
    """A conversation with one model: ``ask`` a question, get the streamed answer."""

    def __init__(
        self,
        engine: Engine,
        *,
        system: str | None = None,
        registry: ToolRegistry | None = None,
        sampler: SamplerConfig = GREEDY,
        max_rounds: int = 4,
        max_tokens: int = 256,
        enable_thinking: bool = True,
        on_event: EventHandler | None = None,
        template: ChatTemplate | None = None,
    ):
        self.engine = engine
        self.template = template or ChatTemplate.for_model(
            template_metadata(engine), engine.file.arch
        )
        tok = engine.tokenizer
        openers = {tok.token_id(m) for m in TURN_OPENERS if m in self.template.source}
        self.completer = EngineCompleter(
            engine, sampler, frozenset(i for i in openers if i is not None)
        )
        self.registry = registry or ToolRegistry()
        # With tools and no system message of the user's, the tool-use default (agent.py).
        self.system = TOOL_SYSTEM_PROMPT if system is None and len(self.registry) else system
        self.max_rounds, self.max_tokens = max_rounds, max_tokens
        self.enable_thinking = enable_thinking
        self.on_event: EventHandler = on_event or (lambda kind, payload: None)
        self.messages: list[dict[str, Any]] = []
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the KV cache is reused as far as the new prompt allows)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def ask(self, text: str) -> Turn:
        user = {"role": "user", "content": text}
        first_call = len(self.completer.calls)
        streamed: list[str] = []  # the text of the current round, kept if Ctrl-C cuts it short

        def on_event(kind: str, payload: Any) -> None:
            if kind == "text":
                streamed.append(payload)
            elif kind in ("tool_call", "tool_result"):
                streamed.clear()
            self.on_event(kind, payload)

        try:
            if len(self.registry):
                result = run_agent(
                    self.completer,
                    self.template,
                    [*self.messages, user],
                    self.registry,
                    max_rounds=self.max_rounds,
                    max_tokens=self.max_tokens,
                    on_event=on_event,
                    enable_thinking=self.enable_thinking,
                )
            else:
                result = self._plain_reply([*self.messages, user], on_event)
        except KeyboardInterrupt:
            partial = cut_at_stop("".join(streamed), self.template.stop_strings()).strip()
            if partial:
                self.messages += [user, {"role": "assistant", "content": partial}]
            return Turn(partial, True, None, self.completer.calls[first_call:])
        self.messages = result.messages
        calls = self.completer.calls[first_call:]
        return Turn(result.content, False, result, calls, tools_offered=len(self.registry) > 0)

    def _plain_reply(self, convo: list[dict[str, Any]], on_event: EventHandler) -> AgentResult:
        """One round without tools: text that looks like a tool call is just text here."""
        prompt = self.template.render(convo, enable_thinking=self.enable_thinking)
        stop = self.template.stop_strings()
        raw = self.completer.complete(
            prompt,
            max_tokens=self.max_tokens,
            stop=stop,
            on_text=lambda chunk: on_event("text", chunk),
        )
        content, reasoning = split_reasoning(cut_at_stop(raw, stop))
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if reasoning:
            message["reasoning_content"] = reasoning
        return AgentResult(content, [*convo, message], 1, True, reasoning)


# end::chat_session[]
