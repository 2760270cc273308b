"""Stage 8b: the generation loop — prompt ids -> prefill -> sample -> decode -> ... -> text.

``Engine`` owns a loaded model, its tokenizer and the KV cache. ``generate()`` prefills the
prompt in one batched pass, then decodes one token at a time, streaming each piece of text as
soon as its UTF-8 is complete. When a new prompt starts with tokens the cache already holds (the
next turn of a chat), only the new suffix is prefilled.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ggufref import kernels
from ggufref.errors import ModelError
from ggufref.gguf_file import open_gguf
from ggufref.model import Model
from ggufref.model_files import resolve_model
from ggufref.sampling import GREEDY, Sampler, SamplerConfig
from ggufref.tokenizer import Tokenizer


@dataclass
class Timings:
    load_s: float = 0.0
    prefill_s: float = 0.0
    prefill_tokens: int = 0
    decode_s: float = 0.0
    decode_tokens: int = 0
    first_token_s: float = 0.0  # from the start of generate() to the first sampled token

    @property
    def prefill_tok_s(self) -> float:
        return self.prefill_tokens / self.prefill_s if self.prefill_s else 0.0

    @property
    def decode_tok_s(self) -> float:
        return self.decode_tokens / self.decode_s if self.decode_s else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "load_s": round(self.load_s, 4),
            "prefill_tok_s": round(self.prefill_tok_s, 2),
            "decode_tok_s": round(self.decode_tok_s, 2),
            "first_token_s": round(self.first_token_s, 4),
            "prefill_tokens": self.prefill_tokens,
            "decode_tokens": self.decode_tokens,
        }


@dataclass
class Generation:
    prompt_tokens: list[int]
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    stop_reason: str = "length"  # "length", "eos" or "stop"
    top_logits: list[list[tuple[int, float]]] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading ids two token lists share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Engine:
    """A model ready to generate: weights mapped, tokenizer built, KV cache allocated."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        n_ctx: int | None = None,
        threads: int | None = None,
        progress: bool = True,
        weights: str = "quantized",
    ):
        t0 = time.perf_counter()
        self.path: Path = resolve_model(model, progress=progress)
        self.file = open_gguf(self.path)
        if threads:
            kernels.set_threads(threads)
        self.model = Model(self.file, n_ctx, weights=weights)  # "dequantized": dequantized.py
        self.tokenizer = Tokenizer.from_gguf(self.file)
        rows = self.file.tensor("token_embd.weight").shape[0]
        if self.tokenizer.vocab_size > rows:  # token ids past the embedding would index out
            raise ModelError(
                f"{self.path}: tokenizer.ggml.tokens has {self.tokenizer.vocab_size} tokens but "
                f"token_embd.weight has {rows} rows"
            )
        self.load_s = time.perf_counter() - t0  # dequantizing, when asked, happens in here
        self._cached: list[int] = []  # the token ids whose K/V the cache holds, in order

    @property
    def cached_tokens(self) -> list[int]:
        """The token ids whose keys and values the cache holds, in order."""
        return list(self._cached)

    @property
    def n_ctx(self) -> int:
        return self.model.n_ctx

    def encode(
        self, text: str, add_bos: bool | None = None, parse_special: bool = False
    ) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos, parse_special=parse_special)

    # tag::encode_rendered[]
    def encode_rendered(self, prompt: str) -> list[int]:
        """A prompt rendered by a chat template: no BOS is added when the template already
        wrote one, and control-token text becomes control tokens only where the template wrote
        it. A ``chat.RenderedPrompt`` knows where the messages' contents are; there,
        ``<|im_end|>`` typed by a user or returned by a tool stays plain text. A plain ``str``
        is trusted whole."""
        tok = self.tokenizer
        bos_text = tok.tokens[tok.bos_id] if tok.bos_id is not None else ""
        add_bos = False if bos_text and prompt.startswith(bos_text) else None
        spans = getattr(prompt, "content_spans", None)
        if spans is None:
            return self.encode(prompt, add_bos=add_bos, parse_special=True)
        return tok.encode_protected(str(prompt), spans, add_bos=add_bos)

    # end::encode_rendered[]

    def check_fits(self, n_prompt: int, max_tokens: int) -> None:
        if n_prompt == 0:
            raise ModelError("the prompt is empty (no tokens to start from)")
        if n_prompt >= self.n_ctx:
            raise ModelError(
                f"the prompt has {n_prompt} tokens but the context holds "
                f"{self.n_ctx}; use a shorter prompt or a larger --ctx"
            )
        if n_prompt + max_tokens > self.n_ctx:
            raise ModelError(
                f"{n_prompt} prompt tokens + {max_tokens} to generate exceed the "
                f"context of {self.n_ctx}; lower -n or raise --ctx"
            )

    def reset(self) -> None:
        """Forget the cached conversation: the next prompt is prefilled from position 0."""
        self.model.reset()
        self._cached = []

    def _prefill(self, ids: list[int]) -> tuple[np.ndarray, int]:
        """Run the part of `ids` the cache does not hold yet: (logits of the last position,
        number of tokens actually run)."""
        keep = common_prefix(self._cached, ids[:-1])  # always recompute the last one
        self.model.cache.truncate(keep)
        self._cached = list(ids[:keep])  # an interrupted pass leaves only what is valid
        logits = self.model.forward(ids[keep:], keep)
        self._cached = list(ids)
        return logits[-1], len(ids) - keep

    # tag::generate_loop[]
    def generate(
        self,
        prompt_ids: list[int],
        max_tokens: int = 32,
        sampler: SamplerConfig = GREEDY,
        stop_ids: Iterable[int] | None = None,
        stop_strings: Iterable[str] = (),
        on_text: Callable[[str], None] | None = None,
        top_logits: int = 0,
        ban_first: Sequence[int] | None = None,
        stop_when: Callable[[str], bool] | None = None,
    ) -> Generation:
        """``ban_first``: token ids the first sampled token may not be (chat/agent.py: the answer
        round after a repeated tool call must start in words, not with another call).
        ``stop_when(text)``: asked at each line break; True stops as a stop string would."""
        self.file.check_unchanged()  # a file truncated under the map would SIGBUS below
        self.check_fits(len(prompt_ids), max_tokens)
        stop_ids = set(self.tokenizer.eot_ids if stop_ids is None else stop_ids)
        out = Generation(list(prompt_ids))
        out.timings.load_s = self.load_s
        smp, stream = Sampler(sampler), self.tokenizer.stream()
        t0 = time.perf_counter()
        logits, n_run = self._prefill(list(prompt_ids))
        out.timings.prefill_s, out.timings.prefill_tokens = time.perf_counter() - t0, n_run
        t_dec = time.perf_counter()
        while True:
            # (n_vocab,): a file may have more output rows than tokens; those ids cannot print
            logits = logits[: self.tokenizer.vocab_size]
            if not np.isfinite(logits).all():
                raise ModelError("the model produced non-finite logits (corrupt weights?)")
            if top_logits:
                best = np.argsort(-logits, kind="stable")[:top_logits]
                out.top_logits.append([(int(i), float(logits[i])) for i in best])
            if ban_first is not None and not out.tokens:
                logits = logits.copy()  # finite, far below the rest: never sampled, never NaN
                logits[ban_first] = logits.min() - 1e4
            tok = smp.sample(logits)
            if not out.tokens:
                out.timings.first_token_s = time.perf_counter() - t0
            if tok in stop_ids:
                out.stop_reason = "eos"
                break
            out.tokens.append(tok)
            smp.accept(tok)
            piece = stream.feed(tok)
            out.text += piece
            if on_text and piece:
                on_text(piece)
            if any(s in out.text for s in stop_strings):
                out.stop_reason = "stop"
                break
            if stop_when is not None and "\n" in piece and stop_when(out.text):
                out.stop_reason = "stop"
                break
            if len(out.tokens) >= max_tokens:
                break
            logits = self.model.forward([tok])[-1]  # decode: one token at the next position
            self._cached.append(tok)
            out.timings.decode_tokens += 1
        tail = stream.flush()
        out.text += tail
        if on_text and tail:
            on_text(tail)
        out.timings.decode_s = time.perf_counter() - t_dec
        return out

    # end::generate_loop[]
