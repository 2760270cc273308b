"""``ggufref bench [kernels]``: speed and memory, side by side with llama.cpp in the same run."""

from __future__ import annotations

import argparse
import json
import os

from ggufref.cli.common import add_weights_arg, positive_int
from ggufref.errors import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark end to end (or the kernels) against llama.cpp")
    p.add_argument(
        "what",
        nargs="?",
        choices=("model", "kernels"),
        default="model",
        help="model: end to end (default); kernels: matvec/matmul per format",
    )
    p.add_argument(
        "-m",
        "--model",
        action="append",
        default=None,
        help="a .gguf path or an alias; repeat -m to benchmark several models in one run "
        "(default: the default model)",
    )
    add_weights_arg(p, several=True)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="threads for both engines (default: number of cores)",
    )
    p.add_argument(
        "--prompt-tokens",
        type=positive_int,
        default=256,
        help="prompt length for the prefill measurement (default 256)",
    )
    p.add_argument(
        "--gen-tokens",
        type=positive_int,
        default=64,
        help="tokens decoded for the decode measurement (default 64)",
    )
    p.add_argument("--repeat", type=positive_int, default=3, help="repeats; the median is shown")
    p.add_argument(
        "--ctx",
        type=positive_int,
        default=1024,
        help="context size for both engines (default 1024)",
    )
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="also write the results JSON to FILE (e.g. docs/data/bench-results.json)",
    )
    p.add_argument(
        "--compare-llama-cpp",
        action="store_true",
        help="also run llama.cpp (llama-cpp-python) on the same model and settings",
    )
    p.add_argument(
        "--profile", action="store_true", help="time each operation of the decode step instead"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ggufref import bench
    from ggufref.model_files import resolve_model

    if args.what == "kernels":
        from ggufref import bench_kernels

        bench_kernels.run(threads=tuple(sorted({1, args.threads})), as_json=args.json)
        return 0
    paths = [str(resolve_model(m, progress=not args.json)) for m in (args.model or [None])]
    if args.profile:
        print(bench.profile_decode(paths[0], args.threads, args.gen_tokens, args.ctx,
                                   weights=args.weights[0]))  # fmt: skip
        return 0
    if args.compare_llama_cpp and not bench.llama_cpp_available():
        raise ModelError(
            "--compare-llama-cpp needs llama-cpp-python (see README: build it without AMX)"
        )
    if args.prompt_tokens + args.gen_tokens > args.ctx:
        raise ModelError(
            f"--prompt-tokens {args.prompt_tokens} + --gen-tokens {args.gen_tokens}"
            f" exceed --ctx {args.ctx}"
        )
    try:
        result = bench.benchmark(
            paths,
            args.threads,
            args.prompt_tokens,
            args.gen_tokens,
            args.repeat,
            args.ctx,
            args.compare_llama_cpp,
            weights=tuple(args.weights),
        )
    except RuntimeError as err:
        raise ModelError(str(err)) from None
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1) if args.json else bench.table(result))
    return 0
