"""``ggufref inspect [MODEL] [--json]``: what is in a GGUF file, and what it costs in memory."""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from typing import Any

from ggufref.cli.common import add_model_arg, human_bytes, one_line, positive_int
from ggufref.config import HYPERPARAMETERS, check_hyperparameter_types
from ggufref.gguf_file import GGUFFile, memory_plan, open_gguf
from ggufref.model_files import resolve_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show metadata, tensors, quant mix and memory plan")
    add_model_arg(p, positional=True)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--ctx",
        type=positive_int,
        default=1024,
        help="context length for the KV-cache line of the memory plan (default 1024)",
    )
    p.set_defaults(func=run)


def summary(f: GGUFFile, n_ctx: int) -> dict[str, Any]:
    """Everything `inspect` shows, as plain data (the JSON output and the docs use it)."""
    check_hyperparameter_types(f)  # the memory plan does arithmetic on them
    tensors: list[dict[str, Any]] = [
        {"name": t.name, "type": t.qtype.name, "shape": list(t.shape), "nbytes": t.nbytes}
        for t in f.tensors.values()
    ]
    counts: Counter[str] = Counter()
    type_bytes: Counter[str] = Counter()
    for t in tensors:
        counts[t["type"]] += 1
        type_bytes[t["type"]] += t["nbytes"]
    return {
        "file": str(f.path),
        "file_bytes": f.size,
        "metadata": f.metadata_summary(),
        "architecture": f.arch,
        "hyperparameters": {k: f.arch_get(k) for k in HYPERPARAMETERS if f.arch_key(k) in f},
        "tokenizer": {
            "model": f.get("tokenizer.ggml.model"),
            "pre": f.get("tokenizer.ggml.pre"),
            "vocab_size": f.array_len("tokenizer.ggml.tokens"),
        },
        "chat_template": "tokenizer.chat_template" in f,
        "tensors": tensors,
        "type_counts": {k: {"count": counts[k], "bytes": type_bytes[k]} for k in sorted(counts)},
        "memory_plan": memory_plan(f, n_ctx).as_dict(),
    }


def shown(value: Any) -> str:
    """``str(value)`` with every non-printable character escaped: names come from the file,
    and an escape sequence in a tensor name could retitle or clear the user's terminal."""
    return one_line(str(value))


def _layer_of(name: str) -> str:
    m = re.match(r"blk\.(\d+)\.", name)
    return f"layer {m.group(1)}" if m else "model"


def _print_text(s: dict[str, Any]) -> None:
    print(f"file          {shown(s['file'])} ({human_bytes(s['file_bytes'])})")
    print(f"architecture  {shown(s['architecture'])}")
    for k, v in s["hyperparameters"].items():
        print(f"  {k:<36} {shown(v)}")
    tok = s["tokenizer"]
    print(
        f"tokenizer     {shown(tok['model'])} (pre: {shown(tok['pre'])}), vocab {tok['vocab_size']}"
    )
    print(f"chat template {'present' if s['chat_template'] else 'absent (built-in fallback)'}")
    print(f"\ntensors ({len(s['tensors'])}):")
    group = None
    for t in s["tensors"]:
        g = _layer_of(t["name"])
        if g != group:
            group = g
            print(f"  [{g}]")
        shape = "x".join(map(str, t["shape"]))
        print(f"    {shown(t['name']):<36} {t['type']:<6} {shape:>14} {t['nbytes']:>12,}")
    print("\nquant-type mix:")
    for k, v in s["type_counts"].items():
        print(f"  {k:<6} {v['count']:>4} tensors {human_bytes(v['bytes']):>12}")
    plan = s["memory_plan"]
    print(f"\nmemory plan (n_ctx {plan['n_ctx']}):")
    print(f"  {'group':<12} {'tensors':>7} {'as stored':>12} {'as FP32':>12}")
    for g in plan["groups"]:
        print(
            f"  {g['group']:<12} {g['tensors']:>7} {human_bytes(g['stored_bytes']):>12} "
            f"{human_bytes(g['fp32_bytes']):>12}"
        )
    print(
        f"  {'weights':<12} {'':>7} {human_bytes(plan['stored_total']):>12} "
        f"{human_bytes(plan['fp32_total']):>12}"
    )
    print(
        f"  {'KV cache':<12} {'':>7} {human_bytes(plan['kv_cache_bytes']):>12} "
        f"(fp16 cache: {human_bytes(plan['kv_cache_bytes_f16'])})"
    )
    print(f"  {'resident':<12} {'':>7} {human_bytes(plan['resident_total']):>12}")


def run(args: argparse.Namespace) -> int:
    f = open_gguf(resolve_model(args.model))
    s = summary(f, args.ctx)
    if args.json:
        print(json.dumps(s, indent=1, default=str))
    else:
        _print_text(s)
    return 0
