"""Stage 9: the command line — ``ggufref inspect | generate | chat | bench | smoke | tokenize``.

Each command lives in its own module with ``register(subparsers)``; this file builds the parser
and is the one place that turns a ggufref error into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ggufref.errors import GgufrefError

COMMANDS = (
    "inspect",
    "generate",
    "chat",
    "bench",
    "smoke",
    "tokenize",
    "plan",
    "models",
    "pull",
    "docs_gen",
)
EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2), not usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ggufref", description="Run and explain quantized GGUF models.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ggufref.cli.{name}_cmd")
        except ModuleNotFoundError as err:
            if err.name != f"ggufref.cli.{name}_cmd":
                raise
            continue
        module.register(sub)
    return parser


def _version() -> str:
    from ggufref import __version__

    return f"ggufref {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    from ggufref.cli.common import tolerant_stdin

    tolerant_stdin()  # piped chat input with invalid UTF-8 becomes U+FFFD, not a traceback
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GgufrefError as err:
        return _user_error(args.command, str(err))
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:  # the OS refused a path the user gave (EIO, ENAMETOOLONG, EACCES)
        where = f"{str(err.filename)[:200]}: " if err.filename else ""
        return _user_error(args.command, f"{where}{err.strerror or err}")


def _user_error(command: str, message: str) -> int:
    """One line on stderr, whatever the message holds (newlines or escape sequences from a
    file's key names, undecodable bytes from a path), then exit status 2."""
    from ggufref.cli.common import one_line

    sys.stdout.flush()
    sys.stderr.write(f"ggufref {command}: error: {one_line(message)}\n")
    return EXIT_USER_ERROR
