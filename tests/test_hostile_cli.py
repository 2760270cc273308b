"""Hostile command-line values (issue 14, class 8): every value is range-checked by argparse,
invalid UTF-8 is one line, and no NaN probability reaches numpy's sampler.

The commands run in-process (``ggufref.cli.main``) so a Python exception other than the
project's own would fail the test with its traceback, as it would reach the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ggufref.cli import main
from ggufref.errors import ModelError
from ggufref.sampling import Sampler, SamplerConfig, apply_repeat_penalty, candidates
from ggufref.testing.models import write_model
from ggufref.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_model(tmp_path_factory.mktemp("cli") / "llama.gguf", "llama"))


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr containing ``needles``."""
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse refuses a value by exiting
        rc = int(stop.code or 0)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


BAD_VALUES = [
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2**64)], "--seed"),
    (["--temperature", "1e-320"], "--temperature"),
    (["--temperature", "nan"], "--temperature"),
    (["--temperature", "inf"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--repeat-penalty", "1e-45"], "--repeat-penalty"),
    (["--repeat-penalty", "1e300"], "--repeat-penalty"),
    (["--repeat-penalty", "nan"], "--repeat-penalty"),
    (["--threads", "10000000000"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--top-k", "-5"], "--top-k"),
    (["--top-k", "1e3"], "--top-k"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "nan"], "--top-p"),
    (["--min-p", "-0.1"], "--min-p"),
    (["-n", "99999999999999999999"], "-n"),
    (["--ctx", "0"], "--ctx"),
    (["--top-logits", "-1"], "--top-logits"),
]


@pytest.mark.parametrize(("extra", "flag"), BAD_VALUES, ids=[" ".join(e) for e, _ in BAD_VALUES])
def test_bad_generate_values_are_one_line(
    extra: list[str], flag: str, model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(capsys, ["generate", "-m", model, "-p", "hi", *extra], flag)


def test_sampling_edges_that_stay_allowed_generate(
    model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The smallest allowed temperature and penalty still give finite probabilities."""
    argv = ["generate", "-m", model, "-p", "hi", "-n", "4", "--json", "--seed", str(2**63 - 1)]
    assert main([*argv, "--temperature", "1e-3", "--repeat-penalty", "1e-3"]) == 0
    assert '"tokens"' in capsys.readouterr().out


# surrogateescape: how Python hands over the byte 0xff from argv
INVALID_UTF8 = "caf\udcc3\udca9 \udcff"


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "-p", INVALID_UTF8],
        ["tokenize", INVALID_UTF8],
    ],
    ids=["generate -p", "tokenize"],
)
def test_invalid_utf8_in_argv_is_one_line(
    argv: list[str], model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(capsys, [argv[0], "-m", model, *argv[1:]], "not valid UTF-8")


def test_invalid_utf8_reaching_the_tokenizer_is_a_model_error(model: str) -> None:
    """``chat PROMPT`` passes its text straight to the tokenizer: a ModelError (one line)."""
    tok = Tokenizer.from_gguf(model)
    with pytest.raises(ModelError, match="not valid UTF-8"):
        tok.encode(INVALID_UTF8)
    assert tok.encode("café") == tok.encode("café")  # valid non-ASCII text still encodes


def test_invalid_utf8_chat_prompt_is_one_line(
    model: str, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(capsys, ["chat", "-m", model, INVALID_UTF8, "-n", "2"], "not valid UTF-8")


def test_invalid_utf8_piped_into_chat_is_not_a_traceback(model: str) -> None:
    """Bytes that are not UTF-8 on stdin become U+FFFD; the session answers and ends."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "pysrc"), "PYTHONIOENCODING": "utf-8"}
    run = subprocess.run(
        [sys.executable, "-m", "ggufref", "chat", "-m", model, "-n", "2", "--temperature", "0"],
        input=b"caf\xc3\xa9 \xff\xfe hello\n/exit\n",
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert b"Traceback" not in run.stderr


# --- the sampler itself never lets NaN through ---------------------------------------------


def test_sampler_config_refuses_values_that_make_nan() -> None:
    for bad in (
        {"temperature": float("nan")},
        {"temperature": -1.0},
        {"top_p": 2.0},
        {"min_p": float("inf")},
        {"repeat_penalty": 0.0},
        {"seed": -1},
    ):
        with pytest.raises(ModelError):
            SamplerConfig(**bad)  # type: ignore[arg-type]


def test_tiny_temperature_falls_back_to_the_best_token() -> None:
    """z / 1e-320 overflows to inf; the draw must still be a proper distribution."""
    logits = np.array([1.0, 3.0, 2.0, 3.0], dtype=np.float32)
    cfg = SamplerConfig(temperature=1e-320, top_k=0, top_p=1.0, min_p=0.0, seed=1)
    ids, probs = candidates(logits, cfg)
    assert np.isfinite(probs).all() and probs.sum() == pytest.approx(1.0)
    assert Sampler(cfg).sample(logits) == 1  # lowest id among the best


def test_tiny_repeat_penalty_does_not_overflow_float32() -> None:
    logits = np.array([3e38, -1.0, 2.0], dtype=np.float32)
    out = apply_repeat_penalty(logits, [0, 1], 1e-45)
    assert out.dtype == np.float64 and np.isfinite(out).all()
    cfg = SamplerConfig(temperature=1.0, repeat_penalty=1e-45, seed=0)
    smp = Sampler(cfg)
    smp.accept(0)
    assert smp.sample(logits) in (0, 1, 2)


def test_nan_logits_are_a_model_error_not_a_numpy_value_error() -> None:
    logits = np.array([0.0, np.nan, 1.0], dtype=np.float32)
    with pytest.raises(ModelError, match="finite"):
        Sampler(SamplerConfig(temperature=1.0, seed=0)).sample(logits)
