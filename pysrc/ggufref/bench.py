"""End-to-end benchmark: ggufref and llama.cpp on the same model, same settings, same run.

Several models and both weight modes in one run: each (model, weights mode, engine) runs in its
own child process (``python -m ggufref.bench worker ...``) so that its peak RSS (VmHWM) is its
own; llama.cpp runs only the quantized mode (it has no other). A run that cannot start (the
seed's FP32 copy of an 8B model does not fit) is recorded with its one-line error.
Per engine and repeat: prefill a prompt of exactly P tokens (cache
reset first), then decode G tokens greedily. Reported: load time, time to first token for a short
prompt (load included), prefill and decode tok/s (median, min, max over R repeats), peak RSS, and
the weight bytes decode reads per second, next to the machine's streaming-read bandwidth.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

SHORT_PROMPT = "The capital of France is"
FILLER = (
    "The weights stay quantized in their blocks, and every matrix is read row by row. "
    "A token becomes a vector, the vector passes through the layers, and logits come out. "
)


def peak_rss_mb() -> float:
    """VmHWM of this process in MiB (the kernel's high-water mark of resident memory)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def prompt_of(tokenize: Any, n: int) -> list[int]:
    """Exactly n prompt ids (BOS included) cut from a repeated filler text."""
    ids = tokenize(FILLER * (n // 8 + 2))
    return ids[:n]


def decode_weight_bytes(path: str, weights: str = "quantized") -> int:
    """Bytes of weights one decode step reads: every matrix once, the output matrix included
    (as stored, or at 4 bytes per weight for --weights dequantized)."""
    from ggufref.gguf_file import open_gguf

    f = open_gguf(path)

    def size(t: Any) -> int:
        return 4 * int(np.prod(t.shape)) if weights == "dequantized" else int(t.nbytes)

    total = sum(
        size(t) for t in f.tensors.values() if len(t.shape) == 2 and t.name != "token_embd.weight"
    )
    # token_embd: one row for the lookup, the whole matrix again when it is the tied output
    embd = f.tensors["token_embd.weight"]
    return total + (size(embd) if "output.weight" not in f.tensors else 0)


# --- workers (run in a child process) --------------------------------------------------------


def _work_ggufref(path: str, a: dict[str, Any]) -> dict[str, Any]:
    from ggufref import kernels
    from ggufref.generate import Engine

    t0 = time.perf_counter()
    weights = a.get("weights", "quantized")
    e = Engine(path, n_ctx=a["ctx"], threads=a["threads"], progress=False, weights=weights)
    load_s = time.perf_counter() - t0
    first = e.generate(e.encode(SHORT_PROMPT), 1)
    ttft = load_s + first.timings.first_token_s
    ids = prompt_of(e.encode, a["prompt_tokens"])
    prefill, decode = [], []
    for _ in range(a["repeat"]):
        e.reset()
        g = e.generate(ids, a["gen_tokens"], stop_ids=set())
        prefill.append(g.timings.prefill_tok_s)
        decode.append(g.timings.decode_tok_s)
    return {
        "load_s": load_s,
        "ttft_s": ttft,
        "prefill": prefill,
        "decode": decode,
        "isa": kernels.current_isa(),
        "threads": kernels.get_threads(),
    }


def _work_llama_cpp(path: str, a: dict[str, Any]) -> dict[str, Any]:
    import llama_cpp

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        path,
        n_ctx=a["ctx"],
        n_threads=a["threads"],
        n_threads_batch=a["threads"],
        n_batch=512,
        verbose=False,
    )
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def last_logits() -> np.ndarray:
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    t1 = time.perf_counter()
    llm.eval(llm.tokenize(SHORT_PROMPT.encode(), add_bos=True))
    int(last_logits().argmax())
    ttft = load_s + time.perf_counter() - t1
    ids = prompt_of(lambda s: llm.tokenize(s.encode(), add_bos=True), a["prompt_tokens"])
    prefill, decode = [], []
    for _ in range(a["repeat"]):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill.append(len(ids) / (time.perf_counter() - t))
        tok = int(last_logits().argmax())
        t = time.perf_counter()
        for _ in range(a["gen_tokens"] - 1):
            llm.eval([tok])
            tok = int(last_logits().argmax())
        decode.append((a["gen_tokens"] - 1) / (time.perf_counter() - t))
    return {
        "load_s": load_s,
        "ttft_s": ttft,
        "prefill": prefill,
        "decode": decode,
        "version": llama_cpp.__version__,
    }


def worker(engine: str, path: str, args: dict[str, Any]) -> None:
    from ggufref.errors import GgufrefError

    fn = _work_ggufref if engine == "ggufref" else _work_llama_cpp
    try:
        out = fn(path, args)
    except GgufrefError as err:  # e.g. --weights dequantized refusing: one line for the parent
        print(json.dumps({"error": str(err)}))
        return
    out["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(out))


# --- the parent: run both, summarise ---------------------------------------------------------


def _spread(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 2),
        "min": round(min(xs), 2),
        "max": round(max(xs), 2),
    }


def run_engine(engine: str, path: str, args: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "ggufref.bench", "worker", engine, path, json.dumps(args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{engine} benchmark failed: {tail}")
    raw = json.loads(proc.stdout.strip().splitlines()[-1])
    if "error" in raw:
        return {"error": raw["error"]}
    return {
        "load_s": round(raw["load_s"], 3),
        "ttft_s": round(raw["ttft_s"], 3),
        "prefill_tok_s": _spread(raw["prefill"]),
        "decode_tok_s": _spread(raw["decode"]),
        "peak_rss_mb": round(raw["peak_rss_mb"], 1),
        **{k: raw[k] for k in ("isa", "version") if k in raw},
    }


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    from ggufref import kernels

    return {
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count() or 1,
        "isa": kernels.best_isa(),
        "mem_total_bytes": _meminfo("MemTotal"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],  # how busy the machine was at start
    }


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def commit() -> str | None:
    """The source's git commit (short hash, "+dirty" when the work tree has changes), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(
            ["git", "-C", here, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", here, "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def stream_read_gb_s(threads: int) -> float:
    """The machine's streaming-read bandwidth with `threads`, measured now (see bench_kernels)."""
    from ggufref.bench_kernels import stream_bandwidth

    return round(stream_bandwidth([threads])[threads], 2)


# tag::bench_schema[]
# docs/data/bench-results.json (schema 2), written by `ggufref bench --json`:
# {"schema": 2, "date", "commit", "machine": {host, cpu, cores, isa, mem_total_bytes, load_avg},
#  "threads", "prompt_tokens", "gen_tokens", "repeat", "ctx", "stream_read_gb_s",
#  "runs": [{"model", "weights": "quantized" | "dequantized", "file_bytes", "decode_weight_bytes",
#            "engines": {"ggufref": E, "llama.cpp": E}, "ratios": {prefill, decode, peak_rss, ttft},
#            "error": "one line" (only when ggufref could not run, e.g. FP32 does not fit)}]}
# E = {"load_s", "ttft_s", "prefill_tok_s": {median, min, max}, "decode_tok_s": {...},
#      "peak_rss_mb", "decode_weight_gb_s", "isa" (ggufref) | "version" (llama.cpp)}
# Ratios are ggufref / llama.cpp in the same run; a dequantized run's ratios compare it with
# llama.cpp's quantized figures from the same model's quantized run.
# end::bench_schema[]
SCHEMA = 2


def benchmark(
    paths: list[str],
    threads: int,
    prompt_tokens: int,
    gen_tokens: int,
    repeat: int,
    ctx: int,
    compare: bool,
    weights: tuple[str, ...] = ("quantized",),
) -> dict[str, Any]:
    """Every model in every weights mode (llama.cpp once per model), as one results object."""
    args = {
        "threads": threads,
        "prompt_tokens": prompt_tokens,
        "gen_tokens": gen_tokens,
        "repeat": repeat,
        "ctx": ctx,
    }
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": commit(),
        "machine": machine(),
        **args,
        "stream_read_gb_s": stream_read_gb_s(threads),
        "runs": [],
    }
    for path in paths:
        cpp = run_engine("llama.cpp", path, args) if compare else None
        for mode in weights:
            result["runs"].append(_one_run(path, mode, args, cpp))
    return result


def _one_run(
    path: str, mode: str, args: dict[str, Any], cpp: dict[str, Any] | None
) -> dict[str, Any]:
    run: dict[str, Any] = {
        "model": os.path.basename(path),
        "weights": mode,
        "file_bytes": os.path.getsize(path),
        "decode_weight_bytes": decode_weight_bytes(path, mode),
        "engines": {},
    }
    ours = run_engine("ggufref", path, {**args, "weights": mode})
    if "error" in ours:
        run["error"] = ours["error"]
    else:
        run["engines"]["ggufref"] = ours
    if cpp is not None and "error" not in cpp:
        run["engines"]["llama.cpp"] = dict(cpp)
    for name, e in run["engines"].items():
        q_bytes = run["decode_weight_bytes"] if name == "ggufref" else decode_weight_bytes(path)
        e["decode_weight_gb_s"] = round(e["decode_tok_s"]["median"] * q_bytes / 1e9, 2)
    if len(run["engines"]) == 2:
        ours, ref = run["engines"]["ggufref"], run["engines"]["llama.cpp"]
        run["ratios"] = {
            "prefill": round(ours["prefill_tok_s"]["median"] / ref["prefill_tok_s"]["median"], 3),
            "decode": round(ours["decode_tok_s"]["median"] / ref["decode_tok_s"]["median"], 3),
            "peak_rss": round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 3),
            "ttft": round(ours["ttft_s"] / ref["ttft_s"], 3),
        }
    return run


def table(r: dict[str, Any]) -> str:
    """One table: a row per (model, weights, engine), then the ratios of each run."""
    m = r["machine"]
    lines = [
        f"{m['cpu']}, {r['threads']} threads, ISA {m['isa']}, load {m.get('load_avg')}; "
        f"prompt {r['prompt_tokens']} tok, decode {r['gen_tokens']} tok, n_ctx {r['ctx']}, "
        f"{r['repeat']} repeats (median [min-max]); streaming read {r['stream_read_gb_s']} GB/s",
        f"{'model':<40}{'weights':<12}{'engine':<10}{'load s':>7}{'1st tok s':>10}"
        f"{'prefill tok/s':>22}{'decode tok/s':>20}{'RSS MiB':>9}{'GB/s':>7}",
    ]
    for run in r["runs"]:
        head = f"{run['model'][:39]:<40}{run['weights']:<12}"
        if "error" in run:
            lines.append(f"{head}{'ggufref':<10}{run['error']}")
        for name, e in run["engines"].items():
            lines.append(
                f"{head}{name:<10}{e['load_s']:>7.2f}{e['ttft_s']:>10.2f}"
                f"{_fmt(e['prefill_tok_s']):>22}{_fmt(e['decode_tok_s']):>20}"
                f"{e['peak_rss_mb']:>9.0f}{e['decode_weight_gb_s']:>7.1f}"
            )
    for run in r["runs"]:
        if "ratios" in run:
            q = run["ratios"]
            lines.append(
                f"ggufref/llama.cpp {run['model']} ({run['weights']}): prefill "
                f"{q['prefill']:.2f}x, decode {q['decode']:.2f}x, peak RSS {q['peak_rss']:.2f}x, "
                f"first token {q['ttft']:.2f}x"
            )
    return "\n".join(lines)


def _fmt(s: dict[str, float]) -> str:
    return f"{s['median']:.1f} [{s['min']:.1f}-{s['max']:.1f}]"


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
    else:
        sys.exit("usage: python -m ggufref.bench worker ENGINE PATH ARGS_JSON")


# --- --profile: where decode time goes ---------------------------------------------------------


def profile_decode(
    path: str, threads: int, n_tokens: int = 32, ctx: int = 1024, weights: str = "quantized"
) -> str:
    """Time each operation of the forward pass during greedy decode. Timing wrappers replace
    the FAST ops set's methods for the run (and are removed after it), so the model code
    itself stays plain."""
    from collections import defaultdict

    from ggufref.generate import Engine
    from ggufref.model.ops import FastOps

    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] += time.perf_counter() - t
                calls[name] += 1

        return wrapper

    e = Engine(path, n_ctx=ctx, threads=threads, progress=False, weights=weights)
    fused = e.model._decode is not None
    e.model._decode = None  # op by op: the Python loop the one-call C step (decode.c) replaces
    output = e.model.output
    originals = {
        n: getattr(FastOps, n)
        for n in ("rms_norm", "rope", "attention", "gelu_mul", "silu_mul", "linear", "linear_many")
    }
    for name, fn in originals.items():
        if not name.startswith("linear"):
            setattr(FastOps, name, staticmethod(timed(name, fn)))

    def linear(x: Any, w: Any) -> Any:
        key = "linear (output)" if w is output else f"linear {w.qtype.name}"
        return timed(key, originals["linear"])(x, w)

    def linear_many(x: Any, ws: Any) -> Any:
        key = "linear " + "+".join(w.qtype.name for w in ws)
        return timed(key, originals["linear_many"])(x, ws)

    FastOps.linear = staticmethod(linear)  # type: ignore[assignment]
    FastOps.linear_many = staticmethod(linear_many)  # type: ignore[assignment]
    e.model.cache.store = timed("kv store", e.model.cache.store)  # type: ignore[method-assign]
    e.model.embed = timed("embed", e.model.embed)  # type: ignore[method-assign]
    try:
        ids = e.encode(SHORT_PROMPT)
        e.generate(ids, 2)
        spent.clear()
        calls.clear()
        t = time.perf_counter()
        g = e.generate(ids, n_tokens, stop_ids=set())
        total = time.perf_counter() - t - g.timings.prefill_s
    finally:
        for name, fn in originals.items():
            setattr(FastOps, name, staticmethod(fn))
    steps = max(1, g.timings.decode_tokens)
    lines = [
        f"decode profile: {steps} tokens, {1000 * total / steps:.2f} ms/token, "
        f"{steps / total:.1f} tok/s",
        *(
            ["(the Python loop, op by op; decode itself runs the layers in one C call, decode.c)"]
            if fused
            else []
        ),
        f"{'operation':<22}{'ms/token':>10}{'share':>8}{'calls/token':>13}",
    ]
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        lines.append(
            f"{name:<22}{1000 * s / steps:>10.3f}{100 * s / total:>7.1f}%"
            f"{calls[name] / steps:>13.1f}"
        )
    other = total - sum(spent.values())
    lines.append(
        f"{'python + sampling':<22}{1000 * other / steps:>10.3f}{100 * other / total:>7.1f}%"
    )
    return "\n".join(lines)
