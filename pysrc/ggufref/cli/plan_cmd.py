"""``ggufref plan MODEL [--ftype Q4_K_M] [--ctx N] [--json]``: memory for a model not on disk."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from ggufref.cli.common import human_bytes, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    from ggufref.plan import FTYPES, PRESETS

    p = sub.add_parser(
        "plan",
        help="plan memory for a model before downloading it: kept quantized vs FP32, KV cache",
    )
    p.add_argument(
        "model",
        help=f"a preset ({', '.join(PRESETS)}), a Hugging Face config.json (or its folder), "
        "or a .gguf file (to plan it at another --ftype)",
    )
    p.add_argument(
        "--ftype",
        default=None,
        metavar="TYPE",
        help=f"file type: {', '.join(FTYPES)} (default: the file's own, else Q4_K_M)",
    )
    p.add_argument(
        "--ctx", type=positive_int, default=4096, help="context length for the KV cache (4096)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _print_text(r: dict[str, Any]) -> None:
    s, mp = r["shape"], r["memory_plan"]
    print(
        f"{r['model']} ({s['arch']}, {s['n_layer']} layers, n_embd {s['n_embd']}, "
        f"vocab {s['n_vocab']}) as {r['ftype']}"
    )
    print("block formats:")
    for k, v in r["type_counts"].items():
        print(f"  {k:<6} {v['count']:>4} tensors {human_bytes(v['bytes']):>12}")
    print(f"\n  {'group':<12} {'tensors':>7} {'as stored':>12} {'as FP32':>12}")
    for g in mp["groups"]:
        print(
            f"  {g['group']:<12} {g['tensors']:>7} {human_bytes(g['stored_bytes']):>12} "
            f"{human_bytes(g['fp32_bytes']):>12}"
        )
    print(
        f"  {'weights':<12} {'':>7} {human_bytes(mp['stored_total']):>12} "
        f"{human_bytes(mp['fp32_total']):>12}"
    )
    print(
        f"  {'':<12} {'':>7} {mp['stored_total'] / 1e9:>9.2f} GB {mp['fp32_total'] / 1e9:>9.2f} GB"
    )
    print(
        f"  KV cache, {mp['n_ctx']} positions: {human_bytes(mp['kv_cache_bytes'])} "
        f"(fp16 cache: {human_bytes(mp['kv_cache_bytes_f16'])})"
    )
    have = r["available_bytes"]
    print(f"\navailable memory (MemAvailable): {'unknown' if have is None else human_bytes(have)}")
    for mode, label in (
        ("quantized", "kept quantized (ggufref default)"),
        ("dequantized", "dequantized to FP32 (the seed)"),
    ):
        fits = r["fits"][mode]
        verdict = "?" if fits is None else ("fits" if fits else "does NOT fit")
        print(f"  {label:<34} {human_bytes(r['needs'][mode]):>12}  {verdict}")


def run(args: argparse.Namespace) -> int:
    from ggufref.model.base import available_memory
    from ggufref.plan import plan

    r = plan(args.model, args.ftype, args.ctx, available_memory())
    if args.json:  # stamped like bench results: the fit verdict depends on this machine
        from ggufref.bench import commit, machine

        r = {**r, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit()}
        r["machine"] = machine()
        print(json.dumps(r, indent=1))
    else:
        _print_text(r)
    return 0
