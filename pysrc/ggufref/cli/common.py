"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import resource


def add_model_arg(p: argparse.ArgumentParser, positional: bool = False) -> None:
    help_text = "a .gguf path or the alias gemma-3-270m (the default model)"
    if positional:
        p.add_argument("model", nargs="?", default=None, help=help_text)
    else:
        p.add_argument("-m", "--model", default=None, help=help_text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="worker threads (default: the number of cores)",
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
