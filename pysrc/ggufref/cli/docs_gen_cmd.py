"""``ggufref docs-gen [--check]``: regenerate the docs' tables from the code (see docs_gen.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs-gen", help="regenerate the docs' generated partials from the code")
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list the stale partials and exit 1 if there are any",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the source checkout (default: the one ggufref runs from, or the cwd)",
    )
    p.add_argument(
        "--capture",
        metavar="NAME",
        choices=[
            "first-run",
            "q4k-block",
            "recipe",
            "transcript-chat-instruct",
            "transcript-tool-calculator",
            "transcript-tool-list-files",
            "transcript-add-a-tool",
        ],
        help="run the commands or read the model a partial shows and write its docs/data/ JSON "
        "(first-run, q4k-block, recipe, transcript-NAME), then regenerate",
    )
    p.add_argument(
        "--model",
        default=None,
        help="with --capture q4k-block or recipe: this .gguf instead of the usual alias",
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="PARTIAL",
        help="only these partials, e.g. formats-table.adoc (default: all)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ggufref import docs_gen
    from ggufref.errors import GgufrefError

    unknown = [n for n in args.names if n not in docs_gen.PARTIALS]
    if unknown:
        raise GgufrefError(
            f"unknown partial {unknown[0]!r}; known: " + ", ".join(docs_gen.PARTIALS)
        )
    root = docs_gen.find_root(args.root)
    if args.capture:
        from ggufref import docs_capture

        path = docs_capture.capture(args.capture, root, args.model)
        print(f"wrote {path.relative_to(root)}")
    for note in docs_gen.notes(root):
        print(f"note: {note}", file=sys.stderr)
    if args.check:
        stale = docs_gen.stale(root, args.names or None)
        for name in stale:
            print(f"stale: {name}")
        if stale:
            print("run `ggufref docs-gen` and commit the result", file=sys.stderr)
        return 1 if stale else 0
    for written in docs_gen.write_all(root, args.names or None):
        print(f"wrote {written.relative_to(root)}")
    return 0
