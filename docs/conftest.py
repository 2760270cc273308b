"""pytest runs the examples on the docs pages (see adoc_sybil.py for the rules)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Until `pip install -e .`, the package is importable from its source tree.
sys.path.insert(0, str(HERE.parent / "pysrc"))

from adoc_sybil import make_sybil  # noqa: E402

# examples/ holds symlinks to pysrc/, csrc/, tests/ and tools/ for Antora's example$ family:
# pytest must not collect the tests a second time through them.
collect_ignore = ["modules/ROOT/examples"]

pytest_collect_file = make_sybil(str(HERE)).pytest()
