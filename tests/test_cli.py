"""The command line: what ``inspect``, ``generate`` and ``tokenize`` print, and how they fail.

Output checks call ``main([...])`` in-process; exit-status checks run ``python -m ggufref`` in a
fresh process, so they see exactly what a user sees (one line on stderr, no traceback).
Expected values come from outside ggufref: the default model's tensor inventory and token ids
as llama.cpp reports them (llama-cpp-python 0.3.36), ``gguf``'s block-size table and reader,
and hand arithmetic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest

from ggufref.cli import main
from ggufref.testing.models import write_model

PYSRC = str(Path(__file__).resolve().parents[1] / "pysrc")

# google/gemma-3-270m Q4_K_M as llama.cpp's loader lists it
DEFAULT_FILE_BYTES = 253_113_024
DEFAULT_TYPE_COUNTS = {"F32": 109, "Q5_0": 81, "Q4_K": 27, "Q8_0": 10, "Q6_K": 9}
FRANCE_IDS = [2, 818, 5279, 529, 7001, 563]  # llama.cpp: "The capital of France is", add_bos


def ggufref(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": PYSRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "ggufref", *args],
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def run_json(capsys, *argv: str) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: write_model(root / f"{arch}.gguf", arch) for arch in ("qwen3", "gemma3")}


# --- inspect ---------------------------------------------------------------------------------


def test_inspect_default_model(capsys):
    s = run_json(capsys, "inspect", "--json", "--ctx", "64")
    assert s["architecture"] == "gemma3"
    assert s["file_bytes"] == DEFAULT_FILE_BYTES
    assert len(s["tensors"]) == 236
    assert {k: v["count"] for k, v in s["type_counts"].items()} == DEFAULT_TYPE_COUNTS
    # every tensor's size follows from its shape and gguf's own block-size table
    for t in s["tensors"]:
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t["type"]]]
        assert t["nbytes"] == int(np.prod(t["shape"])) // block_elems * block_bytes, t["name"]
    plan = s["memory_plan"]
    # the tensor bytes as gguf's own reader counts them (not our parser, not our formula)
    from ggufref.model_files import resolve_model

    oracle = gguf.GGUFReader(resolve_model(None, progress=False))
    assert plan["stored_total"] == sum(int(t.n_bytes) for t in oracle.tensors)
    # KV cache: K and V, 18 layers, 1 KV head, head dim 256, float32, 64 positions
    assert plan["kv_cache_bytes"] == 2 * 18 * 1 * 256 * 4 * 64
    assert plan["resident_total"] == plan["stored_total"] + plan["kv_cache_bytes"]
    # weights stay as stored: resident memory is about the file size, not its FP32 expansion
    assert abs(plan["resident_total"] - DEFAULT_FILE_BYTES) < 0.05 * DEFAULT_FILE_BYTES
    assert plan["fp32_total"] > 4 * DEFAULT_FILE_BYTES


def test_inspect_text_on_a_synthetic_model(capsys, models):
    assert main(["inspect", str(models["qwen3"])]) == 0
    out = capsys.readouterr().out
    assert "architecture  qwen3" in out
    assert "memory plan" in out and "quant-type mix" in out


# --- generate --------------------------------------------------------------------------------


def test_generate_json_default_model(capsys):
    obj = run_json(
        capsys,
        "generate",
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temperature",
        "0",
        "--json",
        "--top-logits",
        "3",
    )
    assert obj["prompt_tokens"] == FRANCE_IDS
    assert len(obj["tokens"]) == 4
    assert obj["text"].startswith(" the capital of")  # llama.cpp's greedy continuation
    assert set(obj["timings"]) >= {"load_s", "prefill_tok_s", "decode_tok_s"}
    assert all(obj["timings"][k] > 0 for k in ("load_s", "prefill_tok_s", "decode_tok_s"))
    assert 0 < obj["peak_rss_mb"] < 4000
    steps = obj["top_logits"]
    assert len(steps) == 4
    for step, chosen in zip(steps, obj["tokens"], strict=True):
        assert len(step) == 3
        logits = [v for _, v in step]
        assert logits == sorted(logits, reverse=True)
        assert step[0][0] == chosen  # greedy picks the best logit


def test_generate_json_without_top_logits(capsys, models):
    obj = run_json(
        capsys,
        "generate",
        "-m",
        str(models["gemma3"]),
        "-p",
        "hello",
        "-n",
        "3",
        "--ctx",
        "512",
        "--json",
    )
    assert "top_logits" not in obj
    assert len(obj["tokens"]) <= 3


# --- tokenize --------------------------------------------------------------------------------


def test_tokenize_matches_llama_cpp(capsys):
    obj = run_json(capsys, "tokenize", "The capital of France is", "--json")
    assert obj["ids"] == FRANCE_IDS
    assert "".join(obj["pieces"][1:]) == "The capital of France is"
    obj = run_json(capsys, "tokenize", "The capital of France is", "--json", "--no-bos")
    assert obj["ids"] == FRANCE_IDS[1:]


def test_tokenize_special_tokens(capsys):
    # Gemma's <start_of_turn> is token 105; as plain text it is several ordinary tokens
    assert run_json(capsys, "tokenize", "<start_of_turn>", "--special", "--json", "--no-bos")[
        "ids"
    ] == [105]
    assert len(run_json(capsys, "tokenize", "<start_of_turn>", "--json", "--no-bos")["ids"]) > 1


def test_tokenize_text_output(capsys, models):
    assert main(["tokenize", "-m", str(models["qwen3"]), "Hello world"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{len(out) - 1} tokens"
    assert json.loads(out[0].split(None, 1)[1]) == "Hello"


# --- failures: exit status 2 and one line ----------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["generate", "-p", "x", "--temperature", "warm"], ["--temperature", "warm"]),
        (["generate", "-p", "x", "-n", "-3"], ["positive integer"]),
        (["generate", "-p", "x", "--ctx", "0"], ["positive integer"]),
        (["generate", "--prompt"], ["--prompt"]),
        (["inspect", "--bogus"], ["--bogus"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_bad_flags(argv, words):
    assert_one_line_error(ggufref(*argv), *words)


def test_prompt_longer_than_context(models):
    proc = ggufref("generate", "-m", str(models["qwen3"]), "-p", "word " * 50, "--ctx", "16")
    assert_one_line_error(proc, "context", "--ctx")


def test_n_predict_beyond_context(models):
    proc = ggufref("generate", "-m", str(models["qwen3"]), "-p", "hi", "-n", "600", "--ctx", "512")
    assert_one_line_error(proc, "600", "512")


def test_missing_model_file(tmp_path):
    missing = tmp_path / "nowhere.gguf"
    assert_one_line_error(ggufref("inspect", str(missing)), str(missing), "no such file")
    assert_one_line_error(ggufref("generate", "-m", str(missing), "-p", "x"), "no such file")


def test_not_a_gguf_file(tmp_path):
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("these are not the weights you are looking for\n")
    assert_one_line_error(ggufref("inspect", str(bogus)), str(bogus), "magic")
    assert_one_line_error(ggufref("tokenize", "-m", str(bogus), "x"), str(bogus))


@pytest.mark.parametrize("keep", [0.6, 0.001])  # tensor data cut short; header cut short
def test_truncated_gguf(models, tmp_path, keep):
    data = models["qwen3"].read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_one_line_error(ggufref("inspect", str(cut)), str(cut))
    assert_one_line_error(ggufref("generate", "-m", str(cut), "-p", "x"), str(cut))
