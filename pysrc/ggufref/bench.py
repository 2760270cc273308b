"""End-to-end benchmark: ggufref and llama.cpp on the same model, same settings, same run.

Several models and both weight modes in one run. Each engine runs in its own child process
(``python -m ggufref.bench worker ...``), so that its peak RSS (VmHWM) is its own; llama.cpp runs
only the quantized mode (it has no other). Per model, llama.cpp's worker stays up while each
weights mode's ggufref worker runs, and the two engines' repeats alternate (A B, B A, A B):
this machine's memory bandwidth is shared with other machines and moves by tens of percent
within minutes, and alternating makes such a change fall on both engines alike.
A run that cannot start (the seed's FP32 copy of an 8B model does not fit) is recorded with its
one-line error. Per engine and repeat: prefill a prompt of exactly P tokens (cache reset first),
then decode G tokens greedily. Reported: load time, time to first token for a short prompt (load
included; each engine loads while no other is working), prefill and decode tok/s (median, min,
max over R repeats), peak RSS, and the weight bytes decode reads per second, next to the
machine's streaming-read bandwidth.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
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


# --- workers (each a child process that stays up for the whole comparison) ------------------
#
# Protocol: the worker loads the model, answers one JSON line {load_s, ttft_s, ...} (or
# {error}), then reads commands from stdin: "run" -> one repeat {prefill, decode} (tok/s),
# "quit" -> {peak_rss_mb} and exit. The parent alternates the engines' repeats, so a change in
# the machine's memory bandwidth during the run (it is shared) hits both engines alike.


class _GgufrefEngine:
    def __init__(self, path: str, a: dict[str, Any]):
        from ggufref import kernels
        from ggufref.generate import Engine

        t0 = time.perf_counter()
        weights = a.get("weights", "quantized")
        self.e = Engine(path, n_ctx=a["ctx"], threads=a["threads"], progress=False, weights=weights)
        load_s = time.perf_counter() - t0
        first = self.e.generate(self.e.encode(SHORT_PROMPT), 1)
        self.info = {
            "load_s": load_s,
            "ttft_s": load_s + first.timings.first_token_s,
            "isa": kernels.current_isa(),
            "threads": kernels.get_threads(),
        }
        self.ids = prompt_of(self.e.encode, a["prompt_tokens"])
        self.gen = a["gen_tokens"]

    def run(self) -> dict[str, float]:
        self.e.reset()
        g = self.e.generate(self.ids, self.gen, stop_ids=set())
        return {"prefill": g.timings.prefill_tok_s, "decode": g.timings.decode_tok_s}


class _LlamaCppEngine:
    def __init__(self, path: str, a: dict[str, Any]):
        import llama_cpp

        self.lib = llama_cpp
        t0 = time.perf_counter()
        self.llm = llama_cpp.Llama(
            path,
            n_ctx=a["ctx"],
            n_threads=a["threads"],
            n_threads_batch=a["threads"],
            n_batch=512,
            verbose=False,
        )
        load_s = time.perf_counter() - t0
        self.n_vocab = self.llm.n_vocab()
        t1 = time.perf_counter()
        self.llm.eval(self.llm.tokenize(SHORT_PROMPT.encode(), add_bos=True))
        int(self._last_logits().argmax())
        self.info = {
            "load_s": load_s,
            "ttft_s": load_s + time.perf_counter() - t1,
            "version": llama_cpp.__version__,
        }
        tokenize = self.llm.tokenize
        self.ids = prompt_of(lambda s: tokenize(s.encode(), add_bos=True), a["prompt_tokens"])
        self.gen = a["gen_tokens"]

    def _last_logits(self) -> np.ndarray:
        ptr = self.lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def run(self) -> dict[str, float]:
        self.llm.reset()
        t = time.perf_counter()
        self.llm.eval(self.ids)
        prefill = len(self.ids) / (time.perf_counter() - t)
        tok = int(self._last_logits().argmax())
        t = time.perf_counter()
        for _ in range(self.gen - 1):
            self.llm.eval([tok])
            tok = int(self._last_logits().argmax())
        return {"prefill": prefill, "decode": (self.gen - 1) / (time.perf_counter() - t)}


def worker(engine: str, path: str, args: dict[str, Any], commands: Any = None) -> None:
    """The child's side of the protocol above (commands: stdin, or any iterable of lines)."""
    from ggufref.errors import GgufrefError

    def say(obj: dict[str, Any]) -> None:
        print(json.dumps(obj), flush=True)

    try:
        e = (_GgufrefEngine if engine == "ggufref" else _LlamaCppEngine)(path, args)
    except GgufrefError as err:  # e.g. --weights dequantized refusing: one line for the parent
        say({"error": str(err)})
        return
    say(e.info)
    for line in sys.stdin if commands is None else commands:
        if line.strip() == "run":
            say(e.run())
        else:  # "quit", or anything else: stop
            break
    say({"peak_rss_mb": peak_rss_mb()})


# --- the parent: run both, summarise ---------------------------------------------------------


def _spread(xs: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(xs), 2),
        "min": round(min(xs), 2),
        "max": round(max(xs), 2),
    }


class Worker:
    """A running worker process: its load figures, one repeat per run(), peak RSS at quit()."""

    def __init__(self, engine: str, path: str, args: dict[str, Any]):
        self.engine = engine
        cmd = [sys.executable, "-m", "ggufref.bench", "worker", engine, path, json.dumps(args)]
        # stderr to a file: a chatty child never blocks on a full pipe (closed in close())
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.info = self._answer()
        self.prefill: list[float] = []
        self.decode: list[float] = []
        if "error" in self.info:
            self.proc.wait()

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            tail = (self.stderr.read().strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"{self.engine} benchmark failed: {tail}")
        return dict(json.loads(line))

    def _send(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def run(self) -> None:
        r = self._send("run")
        self.prefill.append(r["prefill"])
        self.decode.append(r["decode"])

    def quit(self) -> float:
        rss = float(self._send("quit")["peak_rss_mb"])
        self.proc.wait()
        return rss

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def alternate(workers: list[Any], repeat: int) -> None:
    """repeat runs of each worker, alternating, and the order reversed every other round (A B,
    B A, A B, ...) so that a slow drift of the machine favours neither."""
    for r in range(repeat):
        for w in workers if r % 2 == 0 else workers[::-1]:
            w.run()


def summary(
    info: dict[str, Any], prefill: list[float], decode: list[float], peak_rss_mb: float
) -> dict[str, Any]:
    """One engine's entry E of a run (schema below), from its load figures and repeats."""
    return {
        "load_s": round(info["load_s"], 3),
        "ttft_s": round(info["ttft_s"], 3),
        "prefill_tok_s": _spread(prefill),
        "decode_tok_s": _spread(decode),
        "peak_rss_mb": round(peak_rss_mb, 1),
        **{k: info[k] for k in ("isa", "version") if k in info},
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
#            "paired_ratios": {"prefill": [...], "decode": [...]} (one per repeat),
#            "error": "one line" (only when ggufref could not run, e.g. FP32 does not fit)}]}
# E = {"load_s", "ttft_s", "prefill_tok_s": {median, min, max}, "decode_tok_s": {...},
#      "peak_rss_mb", "decode_weight_gb_s", "isa" (ggufref) | "version" (llama.cpp)}
# Ratios are ggufref / llama.cpp in the same run: llama.cpp's figures in a run are its repeats
# alternated with that run's (for a dequantized run too: llama.cpp itself always runs quantized).
# "paired_ratios": {"prefill": [...], "decode": [...]}, ggufref's repeat i over llama.cpp's
# repeat i (run next to each other); ratios.prefill and ratios.decode are their medians, which
# cancel a drift of the machine better than the ratio of the two medians.
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
        result["runs"] += _model_runs(path, weights, args, compare)
    return result


def _model_runs(
    path: str, weights: tuple[str, ...], args: dict[str, Any], compare: bool
) -> list[dict[str, Any]]:
    """One model: llama.cpp's worker (when comparing) stays up while each weights mode's
    ggufref worker starts in turn, and their repeats alternate. A mode ggufref cannot run
    (FP32 does not fit) keeps its error and shows all of llama.cpp's repeats."""
    runs: list[dict[str, Any]] = []
    paired: list[slice] = []  # which of llama.cpp's repeats went with each run
    ours_repeats: list[dict[str, list[float]] | None] = []  # ggufref's, per run
    cpp = Worker("llama.cpp", path, args) if compare else None
    try:
        for mode in weights:
            run: dict[str, Any] = {
                "model": os.path.basename(path),
                "weights": mode,
                "file_bytes": os.path.getsize(path),
                "decode_weight_bytes": decode_weight_bytes(path, mode),
                "engines": {},
            }
            ours = Worker("ggufref", path, {**args, "weights": mode})
            try:
                if "error" in ours.info:
                    run["error"] = ours.info["error"]
                    paired.append(slice(None))
                    ours_repeats.append(None)
                else:
                    first = len(cpp.decode) if cpp else 0
                    alternate([w for w in (cpp, ours) if w is not None], args["repeat"])
                    run["engines"]["ggufref"] = summary(
                        ours.info, ours.prefill, ours.decode, ours.quit()
                    )
                    paired.append(slice(first, first + args["repeat"]))
                    ours_repeats.append({"prefill": ours.prefill, "decode": ours.decode})
            finally:
                ours.close()
            runs.append(run)
        if cpp is not None:
            if not cpp.decode:  # ggufref ran in no mode: llama.cpp's repeats on their own
                alternate([cpp], args["repeat"])
            rss = cpp.quit()
            for run, which, mine in zip(runs, paired, ours_repeats, strict=True):
                ref = {"prefill": cpp.prefill[which], "decode": cpp.decode[which]}
                run["engines"]["llama.cpp"] = summary(cpp.info, ref["prefill"], ref["decode"], rss)
                if mine is not None:
                    run["paired_ratios"] = {
                        k: [round(a / b, 3) for a, b in zip(mine[k], ref[k], strict=True)]
                        for k in ("prefill", "decode")
                    }
    finally:
        if cpp is not None:
            cpp.close()
    for run in runs:
        _add_rates_and_ratios(path, run)
    return runs


def _add_rates_and_ratios(path: str, run: dict[str, Any]) -> None:
    for name, e in run["engines"].items():
        q_bytes = run["decode_weight_bytes"] if name == "ggufref" else decode_weight_bytes(path)
        e["decode_weight_gb_s"] = round(e["decode_tok_s"]["median"] * q_bytes / 1e9, 2)
    if len(run["engines"]) == 2:
        ours, ref = run["engines"]["ggufref"], run["engines"]["llama.cpp"]
        pairs = run["paired_ratios"]
        run["ratios"] = {
            "prefill": round(statistics.median(pairs["prefill"]), 3),
            "decode": round(statistics.median(pairs["decode"]), 3),
            "peak_rss": round(ours["peak_rss_mb"] / ref["peak_rss_mb"], 3),
            "ttft": round(ours["ttft_s"] / ref["ttft_s"], 3),
        }


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
