"""Stage 8: from logits to the next token id.

The chain runs in llama.cpp's default order: repetition penalty -> top-k -> top-p -> min-p ->
temperature -> draw. Temperature 0 means greedy (argmax, lowest id on ties). The same seed draws
the same tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ggufref.errors import ModelError


@dataclass(frozen=True)
class SamplerConfig:
    temperature: float = 0.8
    top_k: int = 40  # 0 = off
    top_p: float = 0.95  # 1.0 = off
    min_p: float = 0.05  # 0.0 = off
    repeat_penalty: float = 1.0  # 1.0 = off
    repeat_last_n: int = 64
    seed: int | None = None

    def __post_init__(self) -> None:
        """Refuse values that would turn probabilities into NaN (the CLI checks ranges too)."""
        finite = (self.temperature, self.top_p, self.min_p, self.repeat_penalty)
        problems = [
            (not all(isinstance(v, int | float) and math.isfinite(v) for v in finite), "finite"),
            (self.temperature < 0, "temperature >= 0"),
            (not 0.0 <= self.top_p <= 1.0, "top_p in 0..1"),
            (not 0.0 <= self.min_p <= 1.0, "min_p in 0..1"),
            (not self.repeat_penalty > 0, "repeat_penalty > 0"),
            (self.top_k < 0 or self.repeat_last_n < 0, "top_k and repeat_last_n >= 0"),
            (self.seed is not None and not 0 <= self.seed < 2**64, "seed in 0..2**64-1"),
        ]
        for bad, expected in problems:
            if bad:
                raise ModelError(f"sampler settings: expected {expected}, got {self}")

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


GREEDY = SamplerConfig(temperature=0.0)


# tag::penalty[]
def apply_repeat_penalty(logits: np.ndarray, recent: list[int], penalty: float) -> np.ndarray:
    """Make recently seen tokens less likely: positive logits / penalty, negative * penalty."""
    if penalty == 1.0 or not recent:
        return logits
    out = logits.astype(np.float64)  # float32 would overflow to inf for a tiny penalty
    ids = np.unique(np.asarray(recent, dtype=np.int64))
    seen = out[ids]
    out[ids] = np.where(seen > 0, seen / penalty, seen * penalty)
    return out


# end::penalty[]


# tag::filters[]
def candidates(logits: np.ndarray, cfg: SamplerConfig) -> tuple[np.ndarray, np.ndarray]:
    """Apply top-k, top-p and min-p; return (token ids, probabilities) of what survives."""
    order = np.argsort(-logits, kind="stable")  # best first, lowest id first on ties
    if cfg.top_k > 0:
        order = order[: cfg.top_k]
    z = logits[order].astype(np.float64)
    probs = np.exp(z - z[0])
    probs /= probs.sum()
    keep = len(order)
    if cfg.top_p < 1.0:  # smallest prefix whose mass reaches top_p
        keep = min(keep, int(np.searchsorted(np.cumsum(probs), cfg.top_p)) + 1)
    if cfg.min_p > 0.0:  # drop tokens less likely than min_p x the best one
        keep = min(keep, max(1, int(np.sum(probs[:keep] >= cfg.min_p * probs[0]))))
    order, z = order[:keep], z[:keep]
    with np.errstate(all="ignore"):  # an overflow is handled below, not warned about
        z = z / cfg.temperature
        p = np.exp(z - z.max())
        p /= p.sum()
    if not np.isfinite(p).all():  # a temperature so small that z overflowed: greedy
        p = (order == order[0]).astype(np.float64)
    return order, p


# end::filters[]


class Sampler:
    """Stateful sampler: owns the RNG and the recent-token window for the penalty."""

    def __init__(self, cfg: SamplerConfig = GREEDY):
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.recent: list[int] = []

    def accept(self, token: int) -> None:
        self.recent.append(token)
        if len(self.recent) > self.cfg.repeat_last_n:
            del self.recent[: len(self.recent) - self.cfg.repeat_last_n]

    def sample(self, logits: np.ndarray) -> int:
        """logits (n_vocab,) float32 -> token id."""
        logits = apply_repeat_penalty(logits, self.recent, self.cfg.repeat_penalty)
        if self.cfg.greedy:
            return int(np.argmax(logits))
        if not np.isfinite(logits).all():  # NaN must never reach rng.choice
            raise ModelError("sampler: the logits are not all finite")
        ids, probs = candidates(logits, self.cfg)
        return int(ids[self.rng.choice(len(ids), p=probs)])
