"""Hostile model metadata, paths and names (issue 14, classes 6 and 7).

A model file is untrusted: every ``tokenizer.ggml.*`` key and hyperparameter we read is checked
for its type at load, and a wrong one is a one-line error naming the key. Paths the OS refuses
and names holding terminal escape sequences must not reach the user as tracebacks or raw escapes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from gguf import GGUFValueType as V
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggufref.cli import main
from ggufref.cli.inspect_cmd import shown
from ggufref.errors import GgufrefError, ModelError
from ggufref.testing.models import write_model
from ggufref.tokenizer import Tokenizer

# --- writing variants of a tiny model ------------------------------------------------------


def rewrite(
    src: Path,
    dst: Path,
    changes: dict[str, tuple[Any, ...]] | None = None,
    drop: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
) -> Path:
    """Copy a GGUF with some keys replaced (``key: (value, type[, item type])``), dropped, or
    tensors renamed."""
    changes, rename = changes or {}, rename or {}
    r = gguf.GGUFReader(src)
    arch = changes.get("general.architecture", (r.get_field("general.architecture").contents(),))
    w = gguf.GGUFWriter(str(dst), arch[0])
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in (*drop, *changes):
            continue
        sub = field.types[-1] if field.types[0] == V.ARRAY else None
        w.add_key_value(key, field.contents(), field.types[0], sub_type=sub)
    for key, (value, *types) in changes.items():
        if key != "general.architecture":
            w.add_key_value(key, value, types[0], sub_type=types[1] if len(types) > 1 else None)
    for t in r.tensors:
        w.add_tensor(rename.get(t.name, t.name), np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("meta") / "llama.gguf", "llama")


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = main(argv)
    except SystemExit as stop:
        rc = int(stop.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


FILE_CASES: dict[str, tuple[dict[str, tuple[Any, ...]], tuple[str, ...], str]] = {
    "bos id as a string": ({"tokenizer.ggml.bos_token_id": ("1", V.STRING)}, (), "bos_token_id"),
    "bos id as 2.5": ({"tokenizer.ggml.bos_token_id": (2.5, V.FLOAT32)}, (), "bos_token_id"),
    "scores as strings": ({"tokenizer.ggml.scores": (["a"] * 9, V.ARRAY, V.STRING)}, (), "scores"),
    "scores as a scalar": ({"tokenizer.ggml.scores": (1.0, V.FLOAT32)}, (), "scores"),
    "scores too short": ({"tokenizer.ggml.scores": ([0.0] * 3, V.ARRAY, V.FLOAT32)}, (), "scores"),
    "token_type too short": (
        {"tokenizer.ggml.token_type": ([1] * 3, V.ARRAY, V.INT32)},
        (),
        "token_type",
    ),
    "tokens as ints": ({"tokenizer.ggml.tokens": ([1, 2, 3], V.ARRAY, V.INT32)}, (), "tokens"),
    "tokens as one string": ({"tokenizer.ggml.tokens": ("abc", V.STRING)}, (), "tokens"),
    "tokens missing": ({}, ("tokenizer.ggml.tokens",), "tokens"),
    "merges as ints": ({"tokenizer.ggml.merges": ([1, 2], V.ARRAY, V.INT32)}, (), "merges"),
    "head_count four": (
        {"llama.attention.head_count": ("four", V.STRING)},
        (),
        "llama.attention.head_count",
    ),
    "head_count NaN": (
        {"llama.attention.head_count": (float("nan"), V.FLOAT32)},
        (),
        "llama.attention.head_count",
    ),
    "head_count inf": (
        {"llama.attention.head_count": (float("inf"), V.FLOAT32)},
        (),
        "llama.attention.head_count",
    ),
    "context_length NaN": (
        {"llama.context_length": (float("nan"), V.FLOAT32)},
        (),
        "llama.context_length",
    ),
    "epsilon as a string": (
        {"llama.attention.layer_norm_rms_epsilon": ("x", V.STRING)},
        (),
        "layer_norm_rms_epsilon",
    ),
}
TOKENIZER_KEYS = ("bos", "scores", "token_type", "tokens", "merges")


@pytest.mark.parametrize("name", list(FILE_CASES))
def test_bad_metadata_is_one_line_in_every_command(
    name: str, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    changes, drop, needle = FILE_CASES[name]
    path = str(rewrite(base, tmp_path / "bad.gguf", changes, drop))
    tokenizer_only = any(k in name for k in TOKENIZER_KEYS)
    commands = [
        ["tokenize", "-m", path, "hi there"],
        ["generate", "-m", path, "-p", "hi", "-n", "2", "--temperature", "0"],
    ]
    if not tokenizer_only:
        commands.append(["inspect", path])
    for argv in commands:
        rc, _, err = run_cli(argv, capsys)
        if tokenizer_only or argv[0] != "tokenize":
            assert_one_line(rc, err, needle)
        else:  # tokenize reads no hyperparameters: it must simply work
            assert rc == 0, err


def vocab(n: int = 8) -> dict[str, Any]:
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": [chr(97 + i) for i in range(n)],
        "tokenizer.ggml.merges": [],
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tokenizer.ggml.tokens", []),
        ("tokenizer.ggml.tokens", None),
        ("tokenizer.ggml.tokens", 5),
        ("tokenizer.ggml.tokens", ["a", None]),
        ("tokenizer.ggml.scores", [0.0, "x"] * 4),
        ("tokenizer.ggml.scores", [True] * 8),
        ("tokenizer.ggml.token_type", [1.5] * 8),
        ("tokenizer.ggml.token_type", [1] * 9),
        ("tokenizer.ggml.merges", "a b"),
        ("tokenizer.ggml.eos_token_id", [1]),
        ("tokenizer.ggml.eot_token_id", "3"),
        ("tokenizer.ggml.add_bos_token", "yes"),
        ("tokenizer.ggml.pre", ["llama3"]),
        ("tokenizer.ggml.model", ["gpt2"]),
    ],
)
def test_tokenizer_metadata_types(key: str, value: Any) -> None:
    meta = vocab()
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    with pytest.raises(ModelError) as info:
        Tokenizer(meta, "m.gguf")
    assert key.rsplit(".", 1)[-1] in str(info.value) or "tokens" in str(info.value)
    assert "\n" not in str(info.value)


def test_byte_token_must_spell_its_byte() -> None:
    meta = {**vocab(), "tokenizer.ggml.model": "llama", "tokenizer.ggml.token_type": [6] * 8}
    with pytest.raises(ModelError, match="byte token"):
        Tokenizer(meta)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "tokenizer.ggml.tokens",
                "tokenizer.ggml.scores",
                "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.pre",
                "tokenizer.ggml.add_bos_token",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**40), 2**40),
            st.floats(allow_nan=True),
            st.text(max_size=6),
            st.lists(st.text(max_size=4), max_size=10),
            st.lists(st.integers(-3, 10), max_size=10),
            st.lists(st.floats(), max_size=10),
        ),
    ),
    st.sampled_from(["llama", "gpt2"]),
    st.text(max_size=20),
)
def test_tokenizer_metadata_fuzz(meta: dict[str, Any], model: str, text: str) -> None:
    """Any metadata: a ModelError, or a tokenizer that encodes and decodes without crashing."""
    meta = {
        k: v for k, v in {**vocab(), **meta, "tokenizer.ggml.model": model}.items() if v is not None
    }
    try:
        tok = Tokenizer(meta)
    except ModelError as err:
        assert "\n" not in str(err)
        return
    try:
        ids = tok.encode(text, parse_special=True)
    except ModelError:
        return
    assert all(0 <= i < tok.vocab_size for i in ids)
    tok.decode(ids, special=True)


# --- logits beyond the vocabulary ----------------------------------------------------------


def test_vocab_shorter_than_the_embedding_is_cut_from_the_logits(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = gguf.GGUFReader(base)
    n = 900  # of 958: sampling at temperature 2 reaches the 58 ids with no token quickly

    def field(key: str) -> list[Any]:
        return list(r.get_field(key).contents())[:n]

    path = rewrite(
        base,
        tmp_path / "short.gguf",
        {
            "tokenizer.ggml.tokens": (field("tokenizer.ggml.tokens"), V.ARRAY, V.STRING),
            "tokenizer.ggml.scores": (field("tokenizer.ggml.scores"), V.ARRAY, V.FLOAT32),
            "tokenizer.ggml.token_type": (field("tokenizer.ggml.token_type"), V.ARRAY, V.INT32),
        },
    )
    for seed in range(3):
        argv = ["generate", "-m", str(path), "-p", "hi", "-n", "40", "--json"]
        argv += ["--temperature", "2", "--top-k", "0", "--top-p", "1", "--min-p", "0"]
        rc, out, err = run_cli([*argv, "--seed", str(seed)], capsys)
        assert rc == 0, err
        assert max(json.loads(out)["tokens"], default=0) < n


def test_vocab_longer_than_the_embedding_is_refused(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = gguf.GGUFReader(base)

    def field(key: str, extra: Any) -> list[Any]:
        return list(r.get_field(key).contents()) + [extra] * 10

    tokens = list(r.get_field("tokenizer.ggml.tokens").contents()) + [f"<x{i}>" for i in range(10)]
    path = rewrite(
        base,
        tmp_path / "long.gguf",
        {
            "tokenizer.ggml.tokens": (tokens, V.ARRAY, V.STRING),
            "tokenizer.ggml.scores": (field("tokenizer.ggml.scores", 0.0), V.ARRAY, V.FLOAT32),
            "tokenizer.ggml.token_type": (field("tokenizer.ggml.token_type", 1), V.ARRAY, V.INT32),
        },
    )
    rc, _, err = run_cli(["generate", "-m", str(path), "-p", "hi", "-n", "2"], capsys)
    assert_one_line(rc, err, "token_embd.weight")


# --- paths and names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/proc/self/mem", "x" * 5000, "/dev/null", "/", "a\udcffb.gguf"],
    ids=["EIO", "ENAMETOOLONG", "device", "directory", "undecodable"],
)
def test_unreadable_paths_are_one_line(path: str, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["inspect", path], ["tokenize", "-m", path, "hi"]):
        rc, _, err = run_cli(argv, capsys)
        assert_one_line(rc, err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied_is_one_line(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked.gguf"
    locked.write_bytes(base.read_bytes())
    locked.chmod(0)
    rc, _, err = run_cli(["inspect", str(locked)], capsys)
    assert_one_line(rc, err)


ESCAPES = "\x1b]0;pwned\x07\x1b[2J\x9b\r"


def test_inspect_escapes_names_from_the_file(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = rewrite(
        base,
        tmp_path / "names.gguf",
        {"tokenizer.ggml.pre": (f"x{ESCAPES}", V.STRING)},
        rename={"output_norm.weight": f"output_norm{ESCAPES}.weight"},
    )
    rc, out, err = run_cli(["inspect", str(path)], capsys)
    assert rc == 0, err
    assert not any(c in out for c in "\x1b\x07\x9b\r"), out
    assert "\\x1b]0;pwned" in out
    rc, out, _ = run_cli(["inspect", str(path), "--json"], capsys)
    assert rc == 0 and "\x1b" not in out and "\x07" not in out


def test_shown_escapes_only_what_cannot_print() -> None:
    assert shown("blk.0.attn_q.weight") == "blk.0.attn_q.weight"
    assert shown("é 中文") == "é 中文"
    assert shown("a\x1b[2Jb\nc") == "a\\x1b[2Jb\\nc"


def test_errors_are_project_errors() -> None:
    assert issubclass(ModelError, GgufrefError)


def test_permission_denied_is_one_line_even_as_root(
    base: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Root reads any file, so the refusal is simulated where the loader opens the file."""
    import builtins

    real_open = builtins.open

    def refusing_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == str(base):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    rc, _, err = run_cli(["inspect", str(base)], capsys)
    assert_one_line(rc, err, "Permission denied")
