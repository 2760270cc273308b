"""Mutation testing: inject known bugs one at a time and check that the tests catch each one.

Every mutant is a one-line source edit of a bug class that has bitten LLM engines (RoPE base
and pairing, positions, norm epsilon, attention scale, grouped-query head mapping, the sliding
window edge, the activation, block-format bit unpacking, BPE merge order, SentencePiece byte
fallback, chat-template BOS). The edit is made in a temporary copy of the project (never in the
working tree); the copy is imported through PYTHONPATH, and a C mutant rebuilds the copy's
kernels. A mutant is *caught* when the test selection fails with it; every mutant must be.

    python tools/mutants.py              # all mutants, the fast test selection (make mutants)
    python tools/mutants.py --quick      # the quick subset, each against the tests that catch it
    python tools/mutants.py --only q6_k_offset --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY = ("pysrc", "tests", "tools", "csrc", "pyproject.toml")
# The fast test selection: the unit, model and parity tests (no site, no docs build).
SELECTION = (
    "tests/test_formats.py",
    "tests/test_kernels.py",
    "tests/test_ops.py",
    "tests/test_model.py",
    "tests/test_parity.py",
    "tests/test_tokenizer.py",
    "tests/test_chat.py",
)


@dataclass(frozen=True)
class Mutant:
    name: str
    bug: str  # what the edit does, in words
    path: str  # file to edit, relative to the project root
    old: str  # text that must occur exactly once
    new: str
    catch: tuple[str, ...]  # the tests expected to catch it (the quick run uses only these)
    quick: bool = False  # part of the subset `make test` runs


MUTANTS = (
    Mutant(
        "rope_base",
        "RoPE base read as 1.5x the file's rope.freq_base",
        "pysrc/ggufref/config.py",
        'rope_base=f.get_float(f.arch_key("rope.freq_base"), DEFAULTS["rope.freq_base"]),',
        'rope_base=1.5 * f.get_float(f.arch_key("rope.freq_base"), DEFAULTS["rope.freq_base"]),',
        ("tests/test_parity.py",),
    ),
    Mutant(
        "rope_pairing",
        "qwen2 rotates (2i, 2i+1) pairs instead of NeoX's (i, i + d/2)",
        "pysrc/ggufref/arch.py",
        'Architecture("qwen2", "neox",',
        'Architecture("qwen2", "normal",',
        ("tests/test_parity.py",),
    ),
    Mutant(
        "position_offset",
        "RoPE positions restart at 0 in every pass (decode forgets pos0)",
        "pysrc/ggufref/model/llama.py",
        "pos = np.arange(pos0, pos0 + n, dtype=np.int32)",
        "pos = np.arange(0, n, dtype=np.int32)",
        ("tests/test_model.py::test_kv_cache_decode_equals_full_recompute",),
        quick=True,
    ),
    Mutant(
        "decode_c_bias",
        "the one-call decode step adds Q's bias to K (C)",
        "csrc/decode.c",
        "add_into(k, L->bk, kv_len);",
        "add_into(k, L->bq, kv_len);",
        ("tests/test_decode.py",),
    ),
    Mutant(
        "norm_epsilon",
        "RMSNorm epsilon 1000x too large in the C path",
        "pysrc/ggufref/model/ops.py",
        "return kernels.rms_norm(flat, w, eps).reshape(x.shape)",
        "return kernels.rms_norm(flat, w, eps * 1000).reshape(x.shape)",
        (
            "tests/test_model.py::test_fast_forward_equals_the_float64_reference_on_the_default_model",
        ),
        quick=True,
    ),
    Mutant(
        "attention_scale",
        "attention scale 1/head_dim instead of 1/sqrt(head_dim)",
        "pysrc/ggufref/config.py",
        "attn_scale=1.0 / math.sqrt(head_dim),",
        "attn_scale=1.0 / head_dim,",
        ("tests/test_model.py", "tests/test_parity.py"),
    ),
    Mutant(
        "gqa_head_mapping",
        "query head h reads K/V head h % n_kv instead of h // group (C kernel)",
        "csrc/attn_ggml.inc",
        "const int64_t kvh = h0 / (j->n_head / j->n_kv_head), hd = j->hd;",
        "const int64_t kvh = h0 % j->n_kv_head, hd = j->hd;",
        ("tests/test_ops.py", "tests/test_model.py"),
    ),
    Mutant(
        "gqa_head_mapping_ref",
        "the float64 reference tiles K/V heads instead of repeating them",
        "pysrc/ggufref/model/ops.py",
        "k = np.repeat(k_layer, group, axis=0)",
        "k = np.tile(k_layer, (group, 1, 1))",
        ("tests/test_model.py",),
    ),
    Mutant(
        "window_edge",
        "sliding window lets one key too many through (C kernel)",
        "csrc/attn_ggml.inc",
        "const int64_t lo = j->window > 0 && p - j->window + 1 > 0 ? p - j->window + 1 : 0;",
        "const int64_t lo = j->window > 0 && p - j->window > 0 ? p - j->window : 0;",
        ("tests/test_ops.py", "tests/test_model.py"),
    ),
    Mutant(
        "window_edge_config",
        "gemma3 sliding window one position wider than the file says",
        "pysrc/ggufref/config.py",
        'DEFAULTS["sliding_window"])',
        'DEFAULTS["sliding_window"]) + 1',
        ("tests/test_parity.py",),
    ),
    Mutant(
        "gelu_variant",
        "gemma3 feed-forward gate through SiLU instead of GELU",
        "pysrc/ggufref/model/gemma3.py",
        "f = ops.linear(ops.gelu_mul(gate, up), lw.w_down)",
        "f = ops.linear(ops.silu_mul(gate, up), lw.w_down)",
        ("tests/test_parity.py",),
    ),
    Mutant(
        "gelu_coefficient",
        "GELU's cubic coefficient 0.044715 mistyped in the readable numpy",
        "pysrc/ggufref/model/ops.py",
        "F32(0.044715) * xh * xh",
        "F32(0.04715) * xh * xh",
        ("tests/test_model.py::test_readable_ops_equal_the_fused_kernels",),
        quick=True,
    ),
    Mutant(
        "q4_k_scale_min",
        "Q4_K: high bits of sub-blocks 4-7 taken from the mins bytes for the scales",
        "pysrc/ggufref/formats.py",
        "sc = np.concatenate([lo & 63, (mix & 15) | ((lo >> 6) << 4)], axis=1)",
        "sc = np.concatenate([lo & 63, (mix & 15) | ((hi >> 6) << 4)], axis=1)",
        ("tests/test_formats.py::test_decoder_is_bit_exact_with_gguf_quants",),
        quick=True,
    ),
    Mutant(
        "q6_k_offset",
        "Q6_K codes offset by 31 instead of 32",
        "pysrc/ggufref/formats.py",
        "q = (low | (high << 4)).astype(np.int8) - np.int8(32)  # (n, 2, 4, 32)",
        "q = (low | (high << 4)).astype(np.int8) - np.int8(31)  # (n, 2, 4, 32)",
        ("tests/test_formats.py",),
    ),
    Mutant(
        "q5_0_high_bit",
        "Q5_0: the fifth bit shifted into bit 3 instead of bit 4",
        "pysrc/ggufref/formats.py",
        'q = (_nibbles(b["qs"]) | (_fifth_bits(b["qh"]) << 4)).astype(np.int8) - np.int8(16)',
        'q = (_nibbles(b["qs"]) | (_fifth_bits(b["qh"]) << 3)).astype(np.int8) - np.int8(16)',
        ("tests/test_formats.py",),
    ),
    Mutant(
        "bpe_merge_priority",
        "BPE merges the highest-ranked pair first instead of the lowest",
        "pysrc/ggufref/tokenizer_bpe.py",
        "heapq.heappush(heap, (rank, left, right, sym[left] + sym[right]))",
        "heapq.heappush(heap, (-rank, left, right, sym[left] + sym[right]))",
        ("tests/test_tokenizer.py",),
        quick=True,
    ),
    Mutant(
        "spm_byte_fallback",
        "SentencePiece byte fallback emits the byte of the first UTF-8 unit only",
        "pysrc/ggufref/tokenizer_spm.py",
        'for b in piece.encode("utf-8"):',
        'for b in piece.encode("utf-8")[:1]:',
        ("tests/test_tokenizer.py",),
    ),
    Mutant(
        "chat_bos",
        "a prompt that starts with BOS as text is not recognised (BOS added twice)",
        "pysrc/ggufref/chat/template.py",
        "return bool(bos_token) and text.startswith(bos_token)",
        "return bool(bos_token) and text.startswith(bos_token + bos_token)",
        ("tests/test_chat.py", "tests/test_tokenizer.py"),
    ),
)


def make_copy(dest: Path) -> None:
    """The parts of the project the tests need, with the built kernels, under dest."""
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(src, dest / name)


def rebuild_kernels(copy: Path) -> None:
    subprocess.run(
        [sys.executable, "pysrc/ggufref/_kernels_build.py"],
        cwd=copy,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_tests(copy: Path, tests: tuple[str, ...], stop_first: bool, timeout: int) -> tuple:
    """(pytest exit code, failing test ids, seconds)."""
    env = dict(os.environ, PYTHONPATH=str(copy / "pysrc"), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", *tests]
    if stop_first:
        cmd.insert(-len(tests), "-x")
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, ["(timeout: counted as caught)"], time.monotonic() - t0
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", r.stdout, re.M)
    return r.returncode, failed, time.monotonic() - t0


def apply(copy: Path, m: Mutant) -> str:
    """Edit the copy; return the original text to restore."""
    path = copy / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"mutant {m.name}: the text to replace occurs {text.count(m.old)} times")
    path.write_text(text.replace(m.old, m.new))
    return text


def run(mutants: list[Mutant], quick: bool, timeout: int = 900) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ggufref-mutants-") as tmp:
        copy = Path(tmp)
        make_copy(copy)
        if not quick:  # (the quick run is part of the test suite, which runs them unmutated)
            rc, failed, _ = run_tests(copy, SELECTION, True, timeout)
            if rc != 0:
                raise SystemExit(f"the unmutated tests fail already: {failed}")
        for m in mutants:
            original = apply(copy, m)
            native = m.path.startswith("csrc/")
            so = copy / "pysrc/ggufref/_kernels.abi3.so"
            saved = so.read_bytes() if native else b""
            try:
                if native:
                    rebuild_kernels(copy)
                tests = m.catch if quick else SELECTION
                rc, failed, secs = run_tests(copy, tests, quick, timeout)
            finally:
                (copy / m.path).write_text(original)
                if native:
                    so.write_bytes(saved)
            caught = rc != 0
            results.append(
                {"mutant": m.name, "bug": m.bug, "caught": caught, "by": failed, "seconds": secs}
            )
            verdict = "caught  " if caught else "SURVIVED"
            print(f"{verdict} {m.name:22} {_short(failed)}", flush=True)
    return results


def _short(failed: list[str]) -> str:
    if not failed:
        return ""
    more = f" (+{len(failed) - 1} more)" if len(failed) > 1 else ""
    return failed[0].split("/")[-1] + more


def adoc_table(results: list[dict]) -> str:
    """The result as an AsciiDoc table: mutant, the bug, the first test that caught it."""
    where = {m.name: m.path for m in MUTANTS}
    lines = [
        "// generated by tools/mutants.py --adoc (make mutants): do not edit",
        '[cols="2,1,4,4",options="header"]',
        "|===",
        "| Mutant | Caught | Injected bug | First failing test (of)",
    ]
    for r in results:
        first = r["by"][0] if r["by"] else ""
        lines += [
            f"| `{r['mutant']}`",
            "| yes" if r["caught"] else "| *no*",
            f"| {r['bug']} (`{where[r['mutant']]}`)",
            f"| `{first}` ({len(r['by'])})",
        ]
    return "\n".join([*lines, "|===", ""])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="the subset `make test` runs")
    ap.add_argument("--only", nargs="*", help="mutant names")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--adoc", type=Path, help="write the result table (AsciiDoc) here")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args()
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:22} {m.path:32} {m.bug}")
        return 0
    chosen = [m for m in MUTANTS if (not args.only or m.name in args.only)]
    if args.quick:
        chosen = [m for m in chosen if m.quick]
    results = run(chosen, args.quick)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.adoc:
        args.adoc.write_text(adoc_table(results))
    survived = [r["mutant"] for r in results if not r["caught"]]
    print(f"{len(results) - len(survived)}/{len(results)} mutants caught")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
