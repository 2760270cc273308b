"""The generate path under abuse: bad weights, impossible sizes, files that change under the map.

Each user-caused problem must end as `ggufref generate` exit status 2 with exactly one line on
stderr (the CLI's contract), or keep working where it can (a model file unlinked while in use).
The checks that guard the C kernels run before any C call: the loader checks every tensor's
shape against the block size and the file's bytes, ``Model`` checks every shape against the
metadata and scans the fp16 block scales, and the engine re-checks the file size before it
reads the map.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGUFValueType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggufref.errors import GGUFError, GgufrefError, ModelError
from ggufref.generate import Engine
from ggufref.gguf_file import open_gguf
from ggufref.model import base
from ggufref.model_files import resolve_model
from ggufref.testing.models import TinyShape, write_model

ROOT = Path(__file__).resolve().parents[1]
CTX = 64  # the synthetic models are trained for 512 positions


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A tiny llama model: Q8_0 attn_v, Q4_K attn_output, Q5_K ffn_gate, Q6_K ffn_up ..."""
    return write_model(tmp_path_factory.mktemp("rb") / "llama.gguf", "llama").read_bytes()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "pysrc")}
    cmd = [sys.executable, "-m", "ggufref", "generate", "--temperature", "0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def assert_user_error(run: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2 and exactly one line on stderr, naming what is wrong."""
    lines = run.stderr.splitlines()
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(lines) == 1, run.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Patching a model's tensor table and blocks
# ---------------------------------------------------------------------------------------------


def tensor_dims_at(data: bytes, tmp: Path, name: str) -> tuple[int, int]:
    """(byte offset of ne[0] in the tensor table, byte offset of the tensor's data)."""
    path = tmp / "probe.gguf"
    path.write_bytes(data)
    f = open_gguf(path)
    field = next(t.field for t in gguf.GGUFReader(path).tensors if t.name == name)  # the oracle
    name_len = struct.unpack_from("<Q", data, field.offset)[0]
    return field.offset + 8 + name_len + 4, f.tensors[name].offset


def with_dims(data: bytes, tmp: Path, name: str, ne: list[int]) -> bytes:
    at, _ = tensor_dims_at(data, tmp, name)
    return data[:at] + struct.pack(f"<{len(ne)}Q", *ne) + data[at + 8 * len(ne) :]


def with_scale(
    data: bytes, tmp: Path, name: str, block: int, block_bytes: int, field_at: int, value: float
) -> bytes:
    _, start = tensor_dims_at(data, tmp, name)
    at = start + block * block_bytes + field_at
    return data[:at] + struct.pack("<e", value) + data[at + 2 :]


def write(tmp: Path, data: bytes, name: str = "model.gguf") -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


# ---------------------------------------------------------------------------------------------
# The kernel boundary: caught before any C call, reported as one line
# ---------------------------------------------------------------------------------------------

Q4_K_BYTES, Q8_0_BYTES = 144, 34  # block sizes; d at byte 0 of both, Q4_K dmin at byte 2

BAD_WEIGHTS = {
    # shape says twice the rows the bytes hold: runs into the next tensor
    "rows-exceed-bytes": (
        lambda d, t: with_dims(d, t, "blk.0.ffn_down.weight", [512, 512]),
        ("blk.0.ffn_down.weight", "overlapping"),
    ),
    # same bytes, transposed shape: only the metadata can tell
    "shape-vs-metadata": (
        lambda d, t: with_dims(d, t, "blk.0.ffn_gate.weight", [512, 256]),
        ("blk.0.ffn_gate.weight", "expected (512, 256)"),
    ),
    # a Q4_K row of 128 weights: half a super-block
    "row-not-whole-blocks": (
        lambda d, t: with_dims(d, t, "blk.0.attn_output.weight", [128, 512]),
        ("blk.0.attn_output.weight", "multiple of 256"),
    ),
    # a norm shorter than n_embd: numpy would broadcast or fail deep inside the forward pass
    "norm-length": (
        lambda d, t: with_dims(d, t, "blk.1.ffn_norm.weight", [128]),
        ("blk.1.ffn_norm", "expected (256,)"),
    ),
    "q4_k-nan-d": (
        lambda d, t: with_scale(d, t, "blk.1.attn_output.weight", 7, Q4_K_BYTES, 0, float("nan")),
        ("blk.1.attn_output.weight", "block 7 scale d", "nan"),
    ),
    "q4_k-inf-dmin": (
        lambda d, t: with_scale(d, t, "blk.0.attn_output.weight", 0, Q4_K_BYTES, 2, float("inf")),
        ("blk.0.attn_output.weight", "block 0 scale dmin", "inf"),
    ),
    "q8_0-nan-d": (
        lambda d, t: with_scale(d, t, "blk.0.attn_v.weight", 1023, Q8_0_BYTES, 0, float("nan")),
        ("blk.0.attn_v.weight", "block 1023 scale d"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_WEIGHTS))
def test_bad_weights_are_refused_before_the_kernels(
    case: str, llama: bytes, tmp_path: Path
) -> None:
    patch, needles = BAD_WEIGHTS[case]
    path = write(tmp_path, patch(llama, tmp_path))
    assert_user_error(cli("-m", path, "-p", "hello", "-n", "4", "--ctx", str(CTX)), *needles)


def test_the_unpatched_model_generates(llama: bytes, tmp_path: Path) -> None:
    """The control for the cases above: the same command on the intact file works."""
    run = cli("-m", write(tmp_path, llama), "-p", "hello", "-n", "4", "--ctx", str(CTX))
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip()


def test_scale_scan_cost_on_the_default_model() -> None:
    """The scan reads only the d/dmin fields, not the codes."""
    f = open_gguf(resolve_model(None))
    f.check_scales()  # first pass faults the pages in (the engine touches them all anyway)
    best = min(_timed(f.check_scales) for _ in range(3))
    # A full decode of the weights would take seconds; the bound leaves room for a shared,
    # loaded machine (the scan itself is tens of ms warm).
    assert best < 1.0, f"scale scan took {best * 1e3:.0f} ms"


def _timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Resource limits
# ---------------------------------------------------------------------------------------------


def test_prompt_longer_than_the_context(llama: bytes, tmp_path: Path) -> None:
    run = cli("-m", write(tmp_path, llama), "-p", "hello world " * 40, "-n", "4", "--ctx", "16")
    assert_user_error(run, "context holds 16", "--ctx")


def test_n_predict_beyond_the_context(llama: bytes, tmp_path: Path) -> None:
    run = cli("-m", write(tmp_path, llama), "-p", "hello", "-n", "100", "--ctx", "32")
    assert_user_error(run, "exceed the context of 32", "-n")


def test_context_beyond_the_trained_context(llama: bytes, tmp_path: Path) -> None:
    run = cli("-m", write(tmp_path, llama), "-p", "hello", "--ctx", "100000000")
    assert_user_error(run, "100000000", "trained context 512")


def test_context_beyond_memory_is_refused_before_allocating(tmp_path: Path) -> None:
    """A model trained for 2^31-1 positions: --ctx 10^8 passes that check, not the memory one."""
    path = write_model(tmp_path / "long.gguf", "llama", shape=TinyShape(n_ctx=2**31 - 1))
    run = cli("-m", str(path), "-p", "hello", "--ctx", "100000000")
    line = assert_user_error(run, "KV cache", "lower --ctx")
    assert "190.7 GiB" in line  # 4 bytes x 2 layers x 2 kv heads x 10^8 x (64 + 64)


def test_kv_memory_check_uses_available_memory(
    llama: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = open_gguf(write(tmp_path, llama))
    # 2 layers x 2 kv heads x (64 + 64) x 4 bytes = 2 KiB per position
    monkeypatch.setattr(base, "available_memory", lambda: 100 * 2048)
    base.Model(f, n_ctx=100)
    with pytest.raises(ModelError, match="needs 0.2 MiB of KV cache but only 0.2 MiB"):
        base.Model(f, n_ctx=101)
    monkeypatch.setattr(base, "available_memory", lambda: None)  # unknown: no check
    assert base.Model(f, n_ctx=512).n_ctx == 512


def test_available_memory_is_plausible() -> None:
    have = base.available_memory()
    assert have is not None and 0 < have < 1 << 50


# ---------------------------------------------------------------------------------------------
# The model file changes under the engine
# ---------------------------------------------------------------------------------------------


def test_truncated_before_open(llama: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, llama[: len(llama) // 2])
    assert_user_error(cli("-m", path, "-p", "hello", "--ctx", str(CTX)), "past the end")


def test_unlinked_after_open_keeps_working(llama: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, llama)
    engine = Engine(path, n_ctx=CTX, progress=False)
    ids = engine.encode("hello world")
    before = engine.generate(ids, 6).tokens
    os.unlink(path)
    engine.model.reset()
    engine._cached = []
    after = engine.generate(ids, 6).tokens
    assert after == before and len(after) == 6


TRUNCATE_AFTER_OPEN = textwrap.dedent("""
    import os, sys
    from ggufref.errors import GGUFError
    from ggufref.generate import Engine
    path = sys.argv[1]
    engine = Engine(path, n_ctx=64, progress=False)
    ids = engine.encode("hello")
    engine.generate(ids, 2)
    os.truncate(path, os.path.getsize(path) // 2)
    try:
        engine.generate(ids, 2)
    except GGUFError as err:
        print("refused:", err)
""")


def test_truncated_after_open_is_refused_not_sigbus(llama: bytes, tmp_path: Path) -> None:
    """Reading a mapped page past the new end would kill the process with SIGBUS (run in a child
    so that a regression cannot take pytest down with it)."""
    path = write(tmp_path, llama)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "pysrc")}
    run = subprocess.run(
        [sys.executable, "-c", TRUNCATE_AFTER_OPEN, path],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, f"status {run.returncode}: {run.stderr[-2000:]}"
    assert "refused:" in run.stdout and "shrank" in run.stdout, run.stdout


def test_check_unchanged_ignores_growth(llama: bytes, tmp_path: Path) -> None:
    path = write(tmp_path, llama)
    f = open_gguf(path)
    with open(path, "ab") as fh:
        fh.write(bytes(100))
    f.check_unchanged()
    os.truncate(path, len(llama) - 1)
    with pytest.raises(GGUFError, match="shrank"):
        f.check_unchanged()


@pytest.mark.parametrize("name", ["output_norm.weight", "blk.1.attn_norm.weight"])
def test_non_finite_norm_weights_are_refused(name: str, llama: bytes, tmp_path: Path) -> None:
    """F32 vectors have no block scale to scan; they are checked whole (a few KB per layer).
    Without this, NaN would be swallowed by the kernels' 8-bit activation quantizer and the
    engine would sample from finite garbage."""
    _, start = tensor_dims_at(llama, tmp_path, name)
    bad = llama[: start + 8] + np.float32(np.inf).tobytes() + llama[start + 12 :]
    run = cli("-m", write(tmp_path, bad), "-p", "hello", "-n", "2", "--ctx", str(CTX))
    assert_user_error(run, name.removesuffix(".weight"), "element 2", "inf")


# ---------------------------------------------------------------------------------------------
# Hostile metadata values on the generate path
# ---------------------------------------------------------------------------------------------


def scalar_values(data: bytes, tmp: Path) -> list[tuple[str, int, str]]:
    """(key, byte offset, struct format) of every scalar metadata value of a file."""
    path = tmp / "values.gguf"
    path.write_bytes(data)
    out = []
    for key, fld in gguf.GGUFReader(path).fields.items():  # gguf's reader as the oracle
        if key.startswith("GGUF.") or len(fld.types) != 1 or fld.types[0] not in SCALAR_FMT:
            continue
        at = fld.offset + 8 + len(fld.parts[1]) + 4  # key length, key, value type
        out.append((key, at, SCALAR_FMT[fld.types[0]]))
    return out


SCALAR_FMT = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT32: "<f",
    GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "<?",
}  # fmt: skip
EDGE_INTS = [0, 1, 2, 3, 7, 255, 2**15, 2**31 - 1, 2**31, 2**32 - 1]
EDGE_FLOATS = [0.0, -1.0, 1e-45, 1e38, float("inf"), float("-inf"), float("nan")]


def _edge(fmt: str, data: st.DataObject) -> bytes:
    if fmt in ("<f", "<d"):
        return struct.pack(fmt, data.draw(st.sampled_from(EDGE_FLOATS), label="value"))
    if fmt == "<?":
        return data.draw(st.sampled_from([b"\x00", b"\x01", b"\x02", b"\xff"]), label="value")
    width = struct.calcsize(fmt)
    value = data.draw(st.sampled_from(EDGE_INTS), label="value") & ((1 << 8 * width) - 1)
    return value.to_bytes(width, "little")


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_hyperparameters_end_in_a_user_error(
    llama: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    """Zero heads, 2^32-1 positions, NaN epsilon, a bool of 0xff ... : load, build the model,
    run two tokens. The outcome is a clean run or a GgufrefError, nothing else."""
    key, at, fmt = data.draw(st.sampled_from(scalar_values(llama, tmp_path)), label="key")
    value = _edge(fmt, data)
    path = write(tmp_path, llama[:at] + value + llama[at + len(value) :], "hyper.gguf")
    try:
        model = base.Model(open_gguf(path), n_ctx=8)
        with np.errstate(all="ignore"):
            model.forward([1, 2])
    except GgufrefError:
        pass


def with_value(data: bytes, tmp: Path, key: str, value: int) -> str:
    ((_, at, fmt),) = [k for k in scalar_values(data, tmp) if k[0] == key]
    return write(tmp, data[:at] + struct.pack(fmt, value) + data[at + struct.calcsize(fmt) :])


@pytest.mark.parametrize("key", ["llama.attention.head_count_kv", "llama.attention.key_length"])
def test_zero_head_sizes_are_a_user_error(key: str, llama: bytes, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        base.Model(open_gguf(with_value(llama, tmp_path, key, 0)), n_ctx=8)


ABSURD_LAYERS = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
    from ggufref.errors import ModelError
    from ggufref.gguf_file import open_gguf
    from ggufref.model.base import Model
    try:
        Model(open_gguf(sys.argv[1]), n_ctx=8)
    except ModelError as err:
        print("refused:", err)
""")


def test_absurd_block_count_is_refused_at_once(llama: bytes, tmp_path: Path) -> None:
    """block_count 2^31-1 with tensors for 2 blocks: refused from the tensor table before anything
    is built per layer (found by the fuzzer: a 2^31-item tuple took minutes and gigabytes). The
    child runs under a 1.5 GiB address-space limit, so a regression fails fast."""
    path = with_value(llama, tmp_path, "llama.block_count", 2**31 - 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "pysrc")}
    try:
        run = subprocess.run(
            [sys.executable, "-c", ABSURD_LAYERS, path],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("no verdict after 20 s")
    assert run.returncode == 0 and "refused:" in run.stdout, run.stderr[-500:]
    assert "block" in run.stdout


def test_negative_epsilon_is_a_user_error(llama: bytes, tmp_path: Path) -> None:
    """rms_norm with epsilon -1 makes NaN activations, which the kernels' 8-bit activation
    quantizer would turn into finite garbage (see the next test): the config refuses it."""
    key = "llama.attention.layer_norm_rms_epsilon"
    ((_, at, _),) = [k for k in scalar_values(llama, tmp_path) if k[0] == key]
    path = write(tmp_path, llama[:at] + struct.pack("<f", -1.0) + llama[at + 4 :])
    with np.errstate(all="ignore"), pytest.raises(ModelError, match="epsilon"):
        engine = Engine(path, n_ctx=CTX, progress=False)
        engine.generate(engine.encode("hello"), 2)


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_K", "Q6_K"])
def test_a_nan_activation_reaches_the_output(qtype: str) -> None:
    """The engine's last line of defence is 'non-finite logits -> ModelError'; it only works if
    NaN survives every matmul, as it does in float arithmetic. (ggml's reference quantizer drops
    it too; the fix is a NaN test on the row's absmax in C, or np.isfinite(x) in linear().)"""
    from gguf import GGMLQuantizationType as T

    from ggufref import kernels
    from ggufref.testing.models import random_blocks
    from ggufref.weights import QuantTensor

    qt = T[qtype]
    w = QuantTensor(qt, (4, 256), random_blocks(qt, 4, 256, 0.1, np.random.default_rng(0)))
    x = np.ones(256, dtype=np.float32)
    x[3] = np.nan
    with np.errstate(all="ignore"):
        assert np.isnan(kernels.linear(x, w)).all()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_a_mutated_key_name_is_a_one_line_error(arch: str, tmp_path: Path) -> None:
    """Each metadata key renamed (one byte changed): the model loads and runs, or the loader,
    config or tokenizer refuses it with a GgufrefError, never a KeyError traceback."""
    path = write_model(tmp_path / "m.gguf", arch)
    data = path.read_bytes()
    for key, field in gguf.GGUFReader(path).fields.items():
        if key.startswith("GGUF."):
            continue
        at = field.offset + 8  # the key's first byte, after its u64 length
        bad = tmp_path / "bad.gguf"
        bad.write_bytes(data[:at] + b"X" + data[at + 1 :])
        try:
            e = Engine(bad, n_ctx=CTX, progress=False)
            e.generate(e.encode("hi"), 1)
        except GgufrefError:
            pass
