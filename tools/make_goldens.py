"""Record llama.cpp's greedy generations as parity goldens (needs llama-cpp-python).

For the default model and one synthetic model per architecture, and a handful of prompts, this
stores the prompt token ids, up to 32 greedy token ids and llama.cpp's top-5 logits at every
step, plus the gap between its two best logits (a near-tie may legitimately go either way).
Run it after changing a synthetic model's recipe; commit the JSON it writes:

    python tools/make_goldens.py            # writes tests/data/goldens/parity_*.json
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
        **self_variation(llm, list(ids), tokens),
    }


def self_variation(llm, ids: list[int], tokens: list[int]) -> dict:
    """How much llama.cpp disagrees with itself: the same sequence scored in one batch vs one
    token at a time (different kernels, different float summation order). Steps where its own
    greedy choice flips between the two are recorded; a near-tie there is not a parity fact."""
    seq = ids + tokens
    llm.reset()
    llm.eval(seq)
    batch = np.array(llm.scores[len(ids) - 1 : len(seq)], dtype=np.float32)
    llm.reset()
    for t in seq:
        llm.eval([t])
    single = np.array(llm.scores[len(ids) - 1 : len(seq)], dtype=np.float32)
    flips = [int(s) for s in np.nonzero(batch.argmax(1) != single.argmax(1))[0]]
    return {
        "self_max_abs_diff": round(float(np.abs(batch - single).max()), 5),
        "self_flip_steps": flips,
    }


def record(name: str, path: Path, prompts: list[tuple[str, int]], file_sha: str) -> None:
    import llama_cpp

    from ggufref.tokenizer import Tokenizer

    eog = set(Tokenizer.from_gguf(path).eot_ids)
    llm = llama_cpp.Llama(
        str(path), n_ctx=N_CTX, n_threads=2, n_batch=N_CTX, logits_all=True, verbose=False, seed=0
    )
    cases = [greedy(llm, p, n, eog) for p, n in prompts]
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="default, llama, qwen2, qwen3 or gemma3")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "pysrc"))
    from ggufref.models import resolve_model
    from ggufref.testing.models import write_model

    OUT.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "default"):
        path = resolve_model(None)
        record(
            "default", path, [(p, 32) for p in DEFAULT_PROMPTS] + [(LONG_PROMPT, 8)], sha256(path)
        )
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen2", "qwen3", "gemma3"):
            if args.only not in (None, arch):
                continue
            path = write_model(Path(tmp) / f"{arch}.gguf", arch)
            record(arch, path, [(p, 32) for p in SYNTH_PROMPTS], sha256(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
