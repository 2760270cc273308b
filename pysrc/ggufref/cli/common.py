"""Options and helpers shared by several commands.

Every value a user types goes through one of the argparse types below, which check its range,
so a bad value is one line from argparse (exit 2) and never reaches numpy or C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import sys
from collections.abc import Callable

# tag::limits[]
MAX_INT_ARG = 2**31 - 1  # counts and sizes (tokens, context, repeats) fit a C int
MAX_THREADS_ARG = 1024  # the C pool caps itself lower (GGR_MAX_THREADS); more is a typo
MAX_SEED = 2**63 - 1  # numpy's default_rng takes any non-negative int; keep it a C int64
# Sampling values outside these ranges turn logits into inf/NaN (a temperature of 1e-320
# divides a logit into inf; a repeat penalty of 1e-45 does the same in float32).
TEMPERATURE_RANGE = (1e-3, 1e3)  # plus 0 = greedy
REPEAT_PENALTY_RANGE = (1e-3, 1e3)  # plus 0 = off
# end::limits[]


def add_model_arg(p: argparse.ArgumentParser, positional: bool = False) -> None:
    help_text = "a .gguf path or the alias gemma-3-270m (the default model)"
    if positional:
        p.add_argument("model", nargs="?", default=None, help=help_text)
    else:
        p.add_argument("-m", "--model", default=None, help=help_text)


def int_in(lo: int, hi: int, what: str = "an integer") -> Callable[[str], int]:
    """An argparse type: an integer in ``lo..hi``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r:.40}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} in {lo}..{hi}, got {text:.40}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = int_in(1, MAX_INT_ARG, "a positive integer")
non_negative_int = int_in(0, MAX_INT_ARG, "an integer >= 0")
seed_int = int_in(0, MAX_SEED, "a seed")
threads_int = int_in(1, MAX_THREADS_ARG, "a thread count")


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r:.40}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text:.40}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0.0:
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text:.40}")
    return value


def unit_float(text: str) -> float:
    """A probability-like value in 0..1 (top-p, min-p)."""
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text:.40}")
    return value


def zero_or_in(lo: float, hi: float, zero_means: str) -> Callable[[str], float]:
    """An argparse type: 0 (``zero_means``), or a number in ``lo..hi``."""

    def parse(text: str) -> float:
        value = _float(text)
        if value != 0.0 and not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"expected 0 ({zero_means}) or a number in {lo:g}..{hi:g}, got {text:.40}"
            )
        return value

    parse.__name__ = "number"
    return parse


def utf8_text(text: str) -> str:
    """An argparse type for text arguments (prompts): refuse bytes that are not UTF-8.

    Python decodes ``argv`` with ``surrogateescape``, so an invalid byte arrives as a lone
    surrogate (U+DC80..U+DCFF) that would fail much later, inside the tokenizer.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raw = text.encode("utf-8", "surrogateescape")[err.start : err.start + 1]
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8 (byte 0x{raw.hex() or '??'} at character {err.start})"
        ) from None
    return text


def one_line(text: str) -> str:
    """``text`` with every non-printable character (newlines, escape sequences, the lone
    surrogates that stand for undecodable bytes) written as a backslash escape."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )


def tolerant_stdin() -> None:
    """Read stdin as UTF-8 with invalid bytes turned into U+FFFD (piped chat input may be
    anything; a UnicodeDecodeError from ``input()`` would end the session)."""
    # not a text file (tests, closed stdin): nothing to do
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stdin.reconfigure(errors="replace")  # type: ignore[union-attr]


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=threads_int,
        default=None,
        help=f"worker threads, 1..{MAX_THREADS_ARG} (default: the number of cores)",
    )


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


WEIGHT_MODES = ("quantized", "dequantized")  # the Engine's `weights=` keyword


def _weight_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in WEIGHT_MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(WEIGHT_MODES)} (comma-separated for bench), got {text!r:.40}"
        )
    return list(dict.fromkeys(modes))


def add_weights_arg(p: argparse.ArgumentParser, several: bool = False) -> None:
    """--weights quantized (default: blocks stay mapped) | dequantized (the seed's FP32 path).
    With several=True (bench), a comma-separated list runs each mode: args.weights is a list."""
    p.add_argument(
        "--weights",
        type=_weight_modes if several else str,
        choices=None if several else WEIGHT_MODES,
        default=["quantized"] if several else "quantized",
        help="quantized: weights stay in their GGUF blocks (default); dequantized: every matrix "
        "decoded to FP32 and transposed at load, as the seed project did"
        + (" (comma-separated: run both)" if several else ""),
    )
