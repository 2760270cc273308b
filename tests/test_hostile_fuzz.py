"""The text-path fuzz targets of ``tools/fuzz_chat.py`` (issue 14): a short run of each in the
default suite, and every saved finding replayed. Long runs: ``python tools/fuzz_chat.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_chat", ROOT / "tools" / "fuzz_chat.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_chat"] = module
    spec.loader.exec_module(module)
    return module


fuzz_chat = _load()


@pytest.mark.parametrize("target", sorted(fuzz_chat.TARGETS))
def test_seeds_are_allowed_outcomes(target: str) -> None:
    stats = fuzz_chat.Stats()
    for seed in fuzz_chat.SEEDS[target]:
        fuzz_chat.check(target, seed, stats, save=False)
    assert not stats.findings, stats.findings
    assert stats.runs == len(fuzz_chat.SEEDS[target])


SHORT_RUNS = [("toolcall", 3.0), ("tokenizer", 3.0), ("template", 6.0)]


@pytest.mark.parametrize(("target", "seconds"), SHORT_RUNS)
def test_short_fuzz_run_finds_nothing(target: str, seconds: float) -> None:
    stats = fuzz_chat.fuzz_loop(target, seconds, max_len=20_000, seed=14)
    assert stats.runs > 50
    assert not stats.findings, stats.findings


def test_saved_findings_stay_fixed() -> None:
    saved = sorted(fuzz_chat.FINDINGS.glob("*")) if fuzz_chat.FINDINGS.is_dir() else []
    assert fuzz_chat.replay(saved) == 0


def test_a_finding_is_detected() -> None:
    """The harness can fail: an exception the target does not allow is recorded."""
    stats = fuzz_chat.Stats()
    original = fuzz_chat.TARGETS["toolcall"]
    fuzz_chat.TARGETS["toolcall"] = lambda data: 1 / 0
    try:
        fuzz_chat.check("toolcall", b"x", stats, save=False)
    finally:
        fuzz_chat.TARGETS["toolcall"] = original
    assert stats.outcomes == {"finding": 1} and "ZeroDivisionError" in next(iter(stats.findings))
