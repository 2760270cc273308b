"""Kernel benchmark: matvec GB/s and matmul GFLOP/s per block format, next to this machine's
streaming-read bandwidth measured in the same run.

A decode step is a chain of matvecs, each reading its whole weight once: a matvec cannot beat
the memory bandwidth, so its GB/s of weight bytes over the streaming-read GB/s says how close
the kernel is to the limit. (Matrices that fit in cache on repeated calls can go above it.)
Prefill is a matmul over many tokens, where arithmetic dominates: report GFLOP/s (2 flops per
weight per token).

    python3 -m ggufref.bench_kernels [--model FILE.gguf] [--threads 1 2] [--json] [--quick]
    python3 -m ggufref.bench_kernels --overhead     # Python's cost per call of the small ops
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType as T

from ggufref import formats, kernels
from ggufref.testing.weights import FLOAT_FORMATS, random_weight
from ggufref.weights import QuantTensor

# (name, rows, cols) of the default model (Gemma 3 270M): rows = out_features, cols = in_features
MODEL_SHAPES = (
    ("q", 1024, 640),
    ("k/v", 256, 640),
    ("o", 640, 1024),
    ("gate/up", 2048, 640),
    ("down", 640, 2048),
    ("output", 262144, 640),
)
FORMATS = (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
           T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)  # fmt: skip
MATMUL_TOKENS = (64, 256)
STREAM_BYTES = 1 << 30


def _time(fn: Callable[[], Any], min_time: float, max_reps: int = 200) -> float:
    """Best seconds per call over the repetitions, after one warm-up call.

    The best, not the median: on a shared machine a run that loses its core is noise about the
    load, not about the kernel (the same rule applies to the bandwidth probe).
    """
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_reps and (time.perf_counter() - start < min_time or len(times) < 3):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def stream_bandwidth(threads: Iterable[int], n_bytes: int = STREAM_BYTES) -> dict[int, float]:
    """GB/s of a plain sequential read of n_bytes (summing 64-bit words), per thread count."""
    buf = np.ones(n_bytes, dtype=np.uint8)  # ones, not empty: the pages must really exist
    out = {}
    for n in threads:
        kernels.set_threads(n)
        out[n] = n_bytes / _time(lambda: kernels.stream_read(buf), 0.5, 5) / 1e9
    return out


def bench_weight(
    w: QuantTensor, threads: Sequence[int], min_time: float, matmul: bool = True
) -> dict[str, Any]:
    """Matvec GB/s per thread count; matmul GFLOP/s (max threads) per token count."""
    rows, cols = w.shape
    rng = np.random.default_rng(1)
    row: dict[str, Any] = {"format": formats.layout(w.qtype).name, "rows": rows, "cols": cols,
                           "mbytes": w.nbytes / 1e6}  # fmt: skip
    x1 = rng.standard_normal(cols, dtype=np.float32)
    y1 = np.empty(rows, dtype=np.float32)
    for n in threads:
        kernels.set_threads(n)
        sec = _time(partial(kernels.linear, x1, w, out=y1), min_time)
        row[f"matvec_gbs_{n}t"] = w.nbytes / sec / 1e9
    kernels.set_threads(max(threads))
    for n_tok in MATMUL_TOKENS if matmul else ():
        x = rng.standard_normal((n_tok, cols), dtype=np.float32)
        y = np.empty((n_tok, rows), dtype=np.float32)
        sec = _time(partial(kernels.linear, x, w, out=y), min_time, 20)
        row[f"matmul_gflops_{n_tok}"] = 2.0 * rows * cols * n_tok / sec / 1e9
    return row


def model_weights(path: str) -> list[tuple[str, QuantTensor]]:
    """One tensor per (type, shape) of a GGUF file: block 0's matrices and token_embd."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    seen: set[tuple[int, tuple[int, int]]] = set()
    out = []
    for t in reader.tensors:
        if len(t.shape) != 2 or not (t.name.startswith("blk.0.") or t.name == "token_embd.weight"):
            continue
        shape = (int(t.shape[1]), int(t.shape[0]))  # GGUF ne is (cols, rows)
        key = (int(t.tensor_type), shape)
        if key in seen:
            continue
        seen.add(key)
        data = np.asarray(t.data).view(np.uint8).reshape(shape[0], -1)
        out.append((t.name, QuantTensor(T(int(t.tensor_type)), shape, data, t.name)))
    return out


def _print_table(
    stream: dict[int, float], rows: list[dict[str, Any]], threads: Sequence[int]
) -> None:
    top = max(threads)
    bw = "  ".join(f"{n} thread{'s' if n > 1 else ''}: {gbs:.1f} GB/s" for n, gbs in stream.items())
    print(f"streaming read ({STREAM_BYTES >> 20} MiB): {bw}")
    head = f"{'tensor':<22}{'format':<7}{'rows x cols':>14}{'MB':>8}"
    head += "".join(f"{f'mv {n}t GB/s':>13}" for n in threads)
    head += f"{f'%bw {top}t':>8}" + "".join(f"{f'mm{n} GF/s':>11}" for n in MATMUL_TOKENS)
    print(head)
    for r in rows:
        line = f"{r['name']:<22}{r['format']:<7}{r['rows']:>8}x{r['cols']:<5}{r['mbytes']:>8.2f}"
        line += "".join(f"{r[f'matvec_gbs_{n}t']:>13.1f}" for n in threads)
        line += f"{100 * r[f'matvec_gbs_{top}t'] / stream[top]:>7.0f}%"
        line += "".join(
            f"{r.get(f'matmul_gflops_{n}', float('nan')):>11.1f}" for n in MATMUL_TOKENS
        )
        print(line)


def run(
    threads: Sequence[int] = (1, 2),
    as_json: bool = False,
    model: str | None = None,
    formats_: Sequence[T] = FORMATS,
    quick: bool = False,
    min_time: float = 0.2,
) -> dict[str, Any]:
    """Benchmark every format at the default model's shapes (random valid blocks), then the
    model file's own tensors if a path is given. Prints a table (or JSON); returns the results.

    The 262144 x 640 output matrix is matvec-only (generation applies it to one token at a
    time) and skips F32/F16/BF16 (0.3-0.7 GB of random data). quick=True: only that matrix and
    gate/up, for the formats of the default model.
    """
    before = kernels.get_threads()
    try:
        stream = stream_bandwidth(threads)
        shapes = [s for s in MODEL_SHAPES if not quick or s[0] in ("gate/up", "output")]
        fmts = [t for t in formats_ if not quick or t in (T.Q5_0, T.Q8_0, T.Q4_K, T.Q6_K)]
        results = []
        for name, rows, cols in shapes:
            for qtype in fmts:
                lay = formats.layout(qtype)
                if cols % lay.block_elems or (name == "output" and qtype in FLOAT_FORMATS):
                    continue
                w = random_weight(qtype, rows, cols)
                r = bench_weight(w, threads, min_time, matmul=name != "output")
                results.append({"name": f"random {name}", **r})
                del w
        for name, w in model_weights(model) if model else []:
            r = bench_weight(w, threads, min_time, matmul=name != "token_embd.weight")
            results.append({"name": name.removeprefix("blk.0."), **r})
    finally:
        kernels.set_threads(before)
    report = {"cpu": kernels.cpu_features(), "isa": kernels.current_isa(),
              "stream_gbs": stream, "results": results}  # fmt: skip
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(f"kernels: {report['isa']}  cpu: {report['cpu']}")
        _print_table(stream, results, threads)
    return report


def call_overhead(reps: int = 20000) -> dict[str, float]:
    """Microseconds per call of each op the decode loop makes ~10 times per layer, on shapes so
    small that the C work is negligible: what is left is Python (checks, cffi pointers)."""
    r = np.random.default_rng(0)
    x = r.standard_normal(32).astype(np.float32)
    out = np.empty_like(x)
    ones = np.ones(32, dtype=np.float32)
    xr = r.standard_normal((1, 1, 32)).astype(np.float32)
    pos = np.zeros(1, dtype=np.int32)
    cache = r.standard_normal((1, 4, 32)).astype(np.float16).astype(np.float32)
    att = np.empty_like(xr)
    w = random_weight(T.Q8_0, 1, 32)
    y = np.empty(1, dtype=np.float32)
    calls: dict[str, Callable[[], Any]] = {
        "rms_norm (32,)": lambda: kernels.rms_norm(x, ones, 1e-6, out=out),
        "rope (1, 1, 32)": lambda: kernels.rope(xr, pos, 1e4, True),
        "gelu_tanh_mul (32,)": lambda: kernels.gelu_tanh_mul(x, x, out=out),
        "silu_mul (32,)": lambda: kernels.silu_mul(x, x, out=out),
        "attention f16 (1, 1, 32), 1 key": lambda: kernels.attention(
            xr, cache, cache, 0, 1, 1.0, out=att, f16=True
        ),
        "linear Q8_0 (1, 32)": lambda: kernels.linear(x, w, out=y),
    }
    result = {}
    for name, fn in calls.items():
        fn()
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        result[name] = 1e6 * (time.perf_counter() - t0) / reps
    return result


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python3 -m ggufref.bench_kernels", description=__doc__)
    p.add_argument("--model", help="also benchmark this GGUF file's tensors")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true", help="default model's formats, two shapes")
    p.add_argument("--overhead", action="store_true", help="only the per-call cost of tiny ops")
    a = p.parse_args(argv)
    if a.overhead:
        for name, us in call_overhead().items():
            print(f"{name:34s} {us:6.2f} us/call")
        return
    run(tuple(a.threads), a.json, a.model, quick=a.quick)


if __name__ == "__main__":
    main()
