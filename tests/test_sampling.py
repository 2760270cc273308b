"""Sampling: each filter against its definition, and seeds that reproduce."""

from __future__ import annotations

import numpy as np

from ggufref.sampling import Sampler, SamplerConfig, apply_repeat_penalty, candidates

LOGITS = np.log(np.array([0.5, 0.25, 0.125, 0.0625, 0.0625], dtype=np.float32))  # p by hand


def test_greedy_takes_the_argmax_and_the_lowest_id_on_ties() -> None:
    s = Sampler(SamplerConfig(temperature=0.0))
    assert s.sample(np.array([0.0, 3.0, 1.0, 3.0], np.float32)) == 1


def test_top_k_keeps_k_tokens() -> None:
    ids, p = candidates(LOGITS, SamplerConfig(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0))
    assert ids.tolist() == [0, 1]
    np.testing.assert_allclose(p, [2 / 3, 1 / 3], rtol=1e-6)  # 0.5 and 0.25 renormalised


def test_top_p_keeps_the_smallest_prefix_reaching_p() -> None:
    cfg = SamplerConfig(temperature=1.0, top_k=0, top_p=0.8, min_p=0.0)
    ids, _ = candidates(LOGITS, cfg)
    assert ids.tolist() == [0, 1, 2]  # 0.5 + 0.25 = 0.75 < 0.8 <= 0.875


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    cfg = SamplerConfig(temperature=1.0, top_k=0, top_p=1.0, min_p=0.2)
    ids, _ = candidates(LOGITS, cfg)
    assert ids.tolist() == [0, 1, 2]  # 0.0625 < 0.2 * 0.5 = 0.1 <= 0.125


def test_temperature_sharpens() -> None:
    cfg = SamplerConfig(temperature=0.5, top_k=0, top_p=1.0, min_p=0.0)
    _, p = candidates(LOGITS, cfg)
    expected = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625]) ** 2
    np.testing.assert_allclose(p, expected / expected.sum(), rtol=1e-6)


def test_repeat_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    out = apply_repeat_penalty(np.array([2.0, -2.0, 1.0], np.float32), [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -4.0, 1.0]


def test_same_seed_same_tokens_and_different_seed_differs() -> None:
    logits = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    cfg = dict(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)

    def draw(seed: int) -> list[int]:
        s = Sampler(SamplerConfig(seed=seed, **cfg))
        return [s.sample(logits) for _ in range(50)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
