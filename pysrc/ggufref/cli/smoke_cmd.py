"""``ggufref smoke [--config FILE] [--json]``: does every model in the list still run?

The exit status is 0 when every row is OK, 1 otherwise (a WARN, a FAIL, or a SKIP: a model that
is not on this machine — ``--allow-missing`` lets SKIP rows pass), and 2 when the configuration
itself is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys

from ggufref.cli.common import add_threads_arg
from ggufref.smoke import (
    SmokeRow,
    default_config,
    exit_status,
    format_table,
    load_config,
    rows_as_json,
    run_smoke,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("smoke", help="run each model of a list briefly and tabulate OK/WARN/FAIL")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="the model list (default: ./smoke-models.json, else the repository's)",
    )
    p.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="models not on this machine (SKIP rows) do not make the exit status non-zero",
    )
    add_threads_arg(p)
    p.set_defaults(func=run)


def _progress(row: SmokeRow) -> None:
    """One line per run as it finishes, with the start of what the model wrote."""
    said = " ".join(row.text.split())
    said = f": {json.dumps(said[:60], ensure_ascii=False)}" if said else ""
    sys.stderr.write(f"  {row.model} [{row.mode}] {row.status}{said}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    entries = load_config(args.config or default_config())
    if not args.json:
        sys.stderr.write(f"smoke: {len(entries)} models\n")
    rows = run_smoke(entries, threads=args.threads, on_row=None if args.json else _progress)
    print(rows_as_json(rows) if args.json else format_table(rows))
    return exit_status(rows, allow_missing=args.allow_missing)
