"""Record llama.cpp's greedy generations as parity goldens (needs llama-cpp-python).

For the default model, one synthetic model per architecture and the real instruct models, and a
handful of prompts, this stores the prompt token ids, the greedy token ids and llama.cpp's top-5
logits at every step, the gap between its two best logits, and llama.cpp's own variation: the
same ids scored in one batch and one token at a time (different kernels, different summation
order) differ by ``self_var`` per step (max over that step's top-5 ids). A near-tie within that
variation may go either way, and a logit is only as exact as llama.cpp agrees with itself.

For the real models it also records the prompt's last position in detail: llama.cpp's top-20
logits after a batched prefill and after one-token-at-a-time evaluation, and the float64
reference's values for the same ids (``ggufref.model.ops.RefOps``: exact math on the decoded
weights), so the tests can put each engine's error next to the exact answer.
Run it after changing a synthetic model's recipe; commit the JSON it writes:

    python tools/make_goldens.py                       # writes tests/data/goldens/parity_*.json
    python tools/make_goldens.py --only qwen2.5-coder-0.5b-instruct
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "goldens"
N_CTX = 1024

DEFAULT_PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "def fibonacci(n):\n    ",
    "Le café est très",
    "1, 2, 3, 4, 5,",
]
# Longer than gemma3's 512-position sliding window, so the window mask is exercised.
LONG_PROMPT = " ".join(f"Item {i} is a {['red', 'green', 'blue'][i % 3]} box." for i in range(90))
# The real instruct models: code and prose, raw text (no chat template), >= 6 prompts.
REAL_MODELS = {  # alias -> greedy tokens per prompt (the 1.5B model's tests are opt-in, slow)
    "qwen2.5-coder-0.5b-instruct": 16,
    "qwen2.5-coder-1.5b-instruct": 8,
}
REAL_PROMPTS = [
    "def fibonacci(n):\n    ",
    "The capital of France is",
    'import numpy as np\n\ndef softmax(x):\n    """Numerically stable softmax."""\n',
    "SELECT name, email FROM users WHERE",
    "// Reverse a linked list in C\nstruct node *reverse(struct node *head) {\n",
    "Once upon a time, in a small village,",
    "Explain the difference between a process and a thread:",
]
TOP_K = 20
SYNTH_PROMPTS = [
    "The quick brown fox",
    "Hello, world! How are you today?",
    "def build_vocab(kind):",
    "The capital of France is Paris; the capital of",
]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def greedy(llm, prompt: str, n: int, eog: set[int]) -> dict:
    """llama.cpp's greedy continuation: prompt ids, tokens, top-5 logits and top-2 gap per step."""
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
    llm.reset()
    llm.eval(ids)
    tokens, top5, gaps = [], [], []
    for _ in range(n):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        best = np.argsort(-logits, kind="stable")[:5]
        top5.append([[int(i), round(float(logits[i]), 5)] for i in best])
        gaps.append(round(float(logits[best[0]] - logits[best[1]]), 6))
        tok = int(best[0])
        if tok in eog:
            break
        tokens.append(tok)
        llm.eval([tok])
    return {
        "prompt": prompt,
        "prompt_ids": list(ids),
        "tokens": tokens,
        "top5": top5,
        "top2_gap": gaps,
        **self_variation(llm, list(ids), tokens, [[t for t, _ in step] for step in top5]),
    }


def batch_and_single(llm, seq: list[int], first: int) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's logits for positions first..len(seq)-1, (steps, V) each: the whole sequence
    in one batch, and the same ids evaluated one token at a time."""
    llm.reset()
    llm.eval(seq)
    batch = np.array(llm.scores[first : len(seq)], dtype=np.float64)
    llm.reset()
    for t in seq:
        llm.eval([t])
    single = np.array(llm.scores[first : len(seq)], dtype=np.float64)
    return batch, single


def self_variation(llm, ids: list[int], tokens: list[int], top_ids: list[list[int]]) -> dict:
    """How much llama.cpp disagrees with itself: the same sequence scored in one batch vs one
    token at a time (different kernels, different float summation order). Per step: the largest
    difference over that step's top-5 ids (self_var), and whether its own greedy choice flips
    between the two orders (a near-tie there is not a parity fact)."""
    batch, single = batch_and_single(llm, ids + tokens, len(ids) - 1)
    flips = [int(s) for s in np.nonzero(batch.argmax(1) != single.argmax(1))[0]]
    per_step = [
        round(float(np.abs(batch[s, top] - single[s, top]).max()), 5)
        for s, top in enumerate(top_ids)
    ]
    return {
        "self_max_abs_diff": round(float(np.abs(batch - single).max()), 5),
        "self_var": per_step,
        "self_flip_steps": flips,
    }


def prefill_detail(llm, path: Path, ids: list[int], n_ctx: int) -> dict:
    """The prompt's last position: llama.cpp's top-20 logits, batched and one token at a time,
    and the float64 reference's logits for the same ids."""
    from ggufref.generate import Engine
    from ggufref.model.base import forward_for
    from ggufref.model.ops import RefOps

    batch, single = batch_and_single(llm, ids, len(ids) - 1)
    top = np.argsort(-batch[-1], kind="stable")[:TOP_K]
    m = Engine(path, n_ctx=n_ctx, progress=False).model
    ref = forward_for(m.cfg.arch)(m, np.array(ids), 0, False, RefOps())[-1]
    r5 = lambda a: [round(float(a[i]), 5) for i in top]  # noqa: E731
    return {
        "top_ids": [int(i) for i in top],
        "llama_batch": r5(batch[-1]),
        "llama_single": r5(single[-1]),
        "reference_f64": r5(ref),
    }


def record(
    name: str, path: Path, prompts: list[tuple[str, int]], file_sha: str, detail: bool = False
) -> None:
    import llama_cpp

    from ggufref.tokenizer import Tokenizer

    eog = set(Tokenizer.from_gguf(path).eot_ids)
    llm = llama_cpp.Llama(
        str(path), n_ctx=N_CTX, n_threads=2, n_batch=N_CTX, logits_all=True, verbose=False, seed=0
    )
    cases = [greedy(llm, p, n, eog) for p, n in prompts]
    if detail:
        for c in cases:
            c["prefill"] = prefill_detail(llm, path, c["prompt_ids"], N_CTX)
    golden = {
        "model": name,
        "file_sha256": file_sha,
        "n_ctx": N_CTX,
        "llama_cpp_python": llama_cpp.__version__,
        "cases": cases,
    }
    out = OUT / f"parity_{name}.json"
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(cases)} prompts")


def report(name: str) -> dict:
    """ggufref against a model's golden: per prompt, the deviation from llama.cpp's batched
    prefill over its top-20 ids (max |diff|), as a ratio to llama.cpp's own batch-vs-single
    variation, and each engine's max error against the float64 reference."""
    from ggufref.generate import Engine
    from ggufref.model_files import resolve_model

    g = json.loads((OUT / f"parity_{name}.json").read_text())
    e = Engine(resolve_model(None if name == "default" else name), n_ctx=g["n_ctx"], progress=False)
    rows = []
    for c in g["cases"]:
        if "prefill" not in c:
            continue
        p = c["prefill"]
        e.reset()
        ours = e.model.forward(c["prompt_ids"], 0)[-1][p["top_ids"]].astype(np.float64)
        batch, single, ref = (
            np.array(p[k]) for k in ("llama_batch", "llama_single", "reference_f64")
        )
        self_var = float(np.abs(batch - single).max())
        rows.append(
            {
                "deviation": float(np.abs(ours - batch).max()),
                "self_variation": self_var,
                # no ratio where llama.cpp's two orders agree exactly (the same kernels ran)
                "ratio": float(np.abs(ours - batch).max()) / self_var if self_var else None,
                "ours_vs_f64": float(np.abs(ours - ref).max()),
                "llama_vs_f64": float(np.abs(batch - ref).max()),
                "llama_single_vs_f64": float(np.abs(single - ref).max()),
            }
        )
    summary = {"model": name, "prompts": len(rows)}
    for key in rows[0] if rows else ():
        vals = np.array([r[key] for r in rows if r[key] is not None])
        summary[key] = {
            "median": round(float(np.median(vals)), 4),
            "worst": round(float(vals.max()), 4),
        }
    return {"summary": summary, "rows": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="default, llama, qwen2, qwen3, gemma3 or a real model alias")
    ap.add_argument("--report", nargs="*", help="print ggufref's parity table for these goldens")
    ap.add_argument(
        "--out", type=Path, help="with --report: also write the table, stamped, to this JSON file"
    )
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "pysrc"))
    if args.report is not None:
        summaries = []
        for name in args.report or ("default", *REAL_MODELS):
            summaries.append(report(name)["summary"])
            print(json.dumps(summaries[-1]))
        if args.out:
            import datetime

            from ggufref import bench, kernels

            stamped = {
                "date": datetime.date.today().isoformat(),
                "commit": bench.commit(),
                "machine": bench.machine(),
                "isa": kernels.current_isa(),
                "goldens_llama_cpp_python": sorted(
                    {
                        json.loads((OUT / f"parity_{n}.json").read_text())["llama_cpp_python"]
                        for n in (s["model"] for s in summaries)
                    }
                ),
                "models": summaries,
            }
            args.out.write_text(json.dumps(stamped, indent=1) + "\n")
            print(f"wrote {args.out}")
        return 0
    from ggufref.model_files import resolve_model
    from ggufref.testing.models import write_model

    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "default"):
        path = resolve_model(None)
        record(
            "default",
            path,
            [(p, 32) for p in DEFAULT_PROMPTS] + [(LONG_PROMPT, 8)],
            sha256(path),
            detail=True,
        )
    for alias, n in REAL_MODELS.items():
        if args.only in (None, alias):
            path = resolve_model(alias)
            record(alias, path, [(p, n) for p in REAL_PROMPTS], sha256(path), detail=True)
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen2", "qwen3", "gemma3"):
            if args.only not in (None, arch):
                continue
            path = write_model(Path(tmp) / f"{arch}.gguf", arch)
            record(arch, path, [(p, 32) for p in SYNTH_PROMPTS], sha256(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
