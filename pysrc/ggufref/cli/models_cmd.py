"""``ggufref models``: the model aliases, their sizes, and whether each is ready on this machine."""

from __future__ import annotations

import argparse
import json

from ggufref.cli.common import human_bytes
from ggufref.model_files import listing


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the model aliases and whether each is present")
    p.add_argument("--json", action="store_true", help="print the rows as one JSON array")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = listing()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["alias"]) for r in rows)
    print(f"{'alias':<{width}}  {'size':>9}  {'present':<7}  how to get it")
    for r in rows:
        present = "yes" if r["present"] else "no"
        print(f"{r['alias']:<{width}}  {human_bytes(r['size']):>9}  {present:<7}  {r['get']}")
    return 0
