"""The quick subset of tools/mutants.py: a few injected bugs, each must make its tests fail.

The full run (every bug class, the whole fast test selection) is `make mutants`; see the
parity-check how-to for its table.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "tools" / "mutants.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["mutants"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_mutants_are_caught() -> None:
    tool = _tool()
    quick = [m for m in tool.MUTANTS if m.quick]
    assert len(quick) >= 4
    results = tool.run(quick, quick=True, timeout=300)
    survived = [r["mutant"] for r in results if not r["caught"]]
    assert not survived, f"injected bugs no test caught: {survived}"


def test_every_mutant_still_applies() -> None:
    """Each mutant's text occurs exactly once in the current sources (else it tests nothing)."""
    tool = _tool()
    assert len(tool.MUTANTS) >= 12
    for m in tool.MUTANTS:
        assert (ROOT / m.path).read_text().count(m.old) == 1, m.name
