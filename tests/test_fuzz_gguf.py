"""Hostile GGUF files: every malformed input ends in GGUFError or a clean load.

Three sources of inputs:

* a raw encoder (below) that writes GGUF bytes field by field, for hand-made edge cases;
* real files (a tiny hand-made model, a synthetic llama model, the header of the default model),
  cut at every structural boundary or mutated by hypothesis at the fields an independent walker
  (``walk``) finds: counts, lengths, value types, dims, ggml types, offsets;
* the regression inputs the fuzzer found (``tests/data/fuzz/``), replayed one by one.

"Handled" means: ``exercise`` (the fuzz target of ``tools/fuzz_gguf.py``: load, read every
metadata value, build every weight, scan the block scales) returns "ok" or "GGUFError", within a
time limit, and the Python heap never grows past a bound proportional to the file size.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import tracemalloc
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ggufref.errors import GGUFError
from ggufref.gguf_file import open_gguf
from ggufref.model_files import resolve_model

ROOT = Path(__file__).resolve().parents[1]
FUZZ_DIR = ROOT / "tests" / "data" / "fuzz"


def _load_fuzz_tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_gguf", ROOT / "tools" / "fuzz_gguf.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_gguf"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz_tool()

# ---------------------------------------------------------------------------------------------
# The verdict: GGUFError or a clean load, in bounded time and memory
# ---------------------------------------------------------------------------------------------

TIME_LIMIT_S = 10  # a hang shows up as a failure, not as a stuck test run
HEAP_SLACK = 1 << 20  # fixed overhead: numpy scratch, lazily imported modules (~90 KB measured)
HEAP_PER_FILE_BYTE = 8  # per-KV / per-tensor Python objects: a few times the bytes they describe


# The fuzz tool's hang guard (SIGALRM): a case past the limit raises fuzz.Hang and fails.
time_limit = fuzz.hang_guard


def verdict(data: bytes, *, measure: bool = False, deep: bool = True) -> str:
    """'ok' or 'GGUFError'; any other exception propagates and fails the test."""
    with fuzz.as_file(data) as path, time_limit(TIME_LIMIT_S):
        if not measure:
            return fuzz.exercise(path) if deep else _shallow(path)
        tracemalloc.start()
        try:
            out = fuzz.exercise(path) if deep else _shallow(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    bound = HEAP_SLACK + HEAP_PER_FILE_BYTE * len(data)
    assert peak <= bound, f"heap peak {peak} bytes for a {len(data)}-byte file (bound {bound})"
    return out


def _shallow(path: str) -> str:
    try:
        f = open_gguf(path)
        f.metadata_summary()
        return "ok"
    except GGUFError:
        return "GGUFError"


HANDLED = {"ok", "GGUFError"}

# ---------------------------------------------------------------------------------------------
# A raw GGUF encoder, written from the format description (not from any writer)
# ---------------------------------------------------------------------------------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR_FMT = {
    U8: "B",
    I8: "b",
    U16: "H",
    I16: "h",
    U32: "I",
    I32: "i",
    F32: "f",
    BOOL: "?",
    U64: "Q",
    I64: "q",
    F64: "d",
}


def gstr(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def kv(key: bytes | str, vtype: int, value: object) -> bytes:
    if vtype == STRING:
        payload = gstr(value)  # type: ignore[arg-type]
    elif vtype in SCALAR_FMT:
        payload = struct.pack("<" + SCALAR_FMT[vtype], value)
    else:
        payload = value  # type: ignore[assignment]  # pre-encoded
    return gstr(key) + struct.pack("<I", vtype) + payload


def arr(itype: int, items: list[object]) -> bytes:
    if itype == STRING:
        body = b"".join(gstr(x) for x in items)  # type: ignore[arg-type]
    else:
        body = struct.pack(f"<{len(items)}{SCALAR_FMT[itype]}", *items)
    return struct.pack("<IQ", itype, len(items)) + body


def tinfo(name: bytes | str, ne: list[int], ttype: int, offset: int) -> bytes:
    return (
        gstr(name)
        + struct.pack("<I", len(ne))
        + struct.pack(f"<{len(ne)}Q", *ne)
        + struct.pack("<IQ", ttype, offset)
    )


LLAMA_KVS = [
    kv("general.architecture", STRING, "llama"),
    kv("llama.context_length", U32, 64),
    kv("llama.embedding_length", U32, 32),
    kv("llama.block_count", U32, 1),
    kv("llama.feed_forward_length", U32, 64),
    kv("llama.attention.head_count", U32, 2),
    kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
]
Q8_0, F32_T = int(GGMLQuantizationType.Q8_0), int(GGMLQuantizationType.F32)


def q8_0_blocks(n: int, d: float = 0.5) -> bytes:
    """n Q8_0 blocks: fp16 d then 32 int8 codes."""
    return (struct.pack("<e", d) + bytes(range(32))) * n


def build(
    kvs: list[bytes] | None = None,
    tensors: list[bytes] | None = None,
    data: bytes | None = None,
    *,
    align: int = 32,
    version: int = 3,
    n_kv: int | None = None,
    n_tensors: int | None = None,
) -> bytes:
    """A GGUF file; by default a valid one with an F32 vector and a (2, 32) Q8_0 weight."""
    kvs = LLAMA_KVS if kvs is None else kvs
    if tensors is None:
        tensors = [
            tinfo("output_norm.weight", [8], F32_T, 0),
            tinfo("token_embd.weight", [32, 2], Q8_0, 32),
        ]
        data = struct.pack("<8f", *range(8)) + q8_0_blocks(2)
    head = b"GGUF" + struct.pack(
        "<IQQ",
        version,
        len(tensors) if n_tensors is None else n_tensors,
        len(kvs) if n_kv is None else n_kv,
    )
    body = head + b"".join(kvs) + b"".join(tensors)
    return body + bytes(-len(body) % align) + (data or b"")


walk = fuzz.walk  # where each structure starts and ends, found without the loader
STRUCTURAL = ("ggml_type", "value_type", "value")  # fields whose absurd values may still load


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The fuzzer's ~2 KB seed: every value type; Q8_0, Q4_K, F16 and F32 tensors."""
    return fuzz.minimal_gguf(tmp_path_factory.mktemp("fz") / "minimal.gguf").read_bytes()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A complete tiny llama model (~1.2 MB, nine block formats)."""
    from ggufref.testing.models import write_model

    return write_model(tmp_path_factory.mktemp("fz") / "llama.gguf", "llama").read_bytes()


@pytest.fixture(scope="module")
def real_head() -> bytes:
    """Header, metadata (262144-token vocab) and tensor table of the default model, ~6.5 MB."""
    n = open_gguf(resolve_model(None)).data_offset + 64 * 1024
    with open(resolve_model(None), "rb") as f:
        return f.read(n)


def sparse_model(path: Path, head: bytes) -> Path:
    """The real model's full size, with only its header written: the data is a hole of zeros."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(resolve_model(None).stat().st_size)
    return path


# ---------------------------------------------------------------------------------------------
# Sanity: the inputs are valid before we break them
# ---------------------------------------------------------------------------------------------


def test_encoder_and_seeds_load_cleanly(small: bytes, synthetic: bytes) -> None:
    assert verdict(build()) == "ok"
    assert verdict(small, measure=True) == "ok"
    assert verdict(synthetic) == "ok"
    s = walk(synthetic)
    with fuzz.as_file(synthetic) as path:
        f = open_gguf(path)
        assert (s.data_start, s.table_end > 24) == (f.data_offset, True)
        assert s.data_end == max(t.offset + t.nbytes for t in f.tensors.values())


# ---------------------------------------------------------------------------------------------
# Truncation at every structural boundary
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "synthetic"])
def test_truncation_at_every_boundary(which: str, request: pytest.FixtureRequest) -> None:
    data: bytes = request.getfixturevalue(which)
    s = walk(data)
    cuts = sorted({c + d for c in s.boundaries for d in (-1, 0, 1) if 0 <= c + d < s.data_end})
    assert len(cuts) > 20
    for cut in cuts:
        assert verdict(data[:cut]) == "GGUFError", f"cut at byte {cut} of {len(data)}"


def test_truncation_of_the_real_header(real_head: bytes, tmp_path: Path) -> None:
    tokens_at = real_head.index(b"tokenizer.ggml.tokens")
    data_offset = len(real_head) - 64 * 1024
    for cut in (
        4,
        24,
        25,
        tokens_at,
        tokens_at + 40,
        tokens_at + 1_000_000,
        data_offset - 20,
        data_offset,
        data_offset + 100,
    ):
        assert verdict(real_head[:cut], deep=False) == "GGUFError", f"cut at byte {cut}"


# ---------------------------------------------------------------------------------------------
# Mutations at the structural fields, and random byte flips, with hypothesis
# ---------------------------------------------------------------------------------------------

ABSURD = [2**63, 2**62, 2**40, 2**64 - 1, 2**32, 2**31 + 7]
FAST = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def poke(data: bytes, at: int, width: int, value: int) -> bytes:
    value &= (1 << (8 * width)) - 1
    return data[:at] + value.to_bytes(width, "little") + data[at + width :]


@FAST
@given(st.data())
def test_absurd_counts_and_lengths_are_refused(small: bytes, data: st.DataObject) -> None:
    """2^63-byte strings, 2^40 tensors, 2^62-item arrays, dims, offsets past the end ..."""
    fields = [f for f in walk(small).fields if not f[2].startswith(STRUCTURAL)]
    at, width, kind = data.draw(st.sampled_from(fields), label="field")
    value = data.draw(st.sampled_from(ABSURD), label="value")
    assert verdict(poke(small, at, width, value), measure=True) == "GGUFError", kind


@FAST
@given(st.data())
def test_any_value_at_a_structural_field(small: bytes, data: st.DataObject) -> None:
    """Types (unknown value types, unknown ggml types, ARRAY of ARRAY) and any count or length."""
    at, width, kind = data.draw(st.sampled_from(walk(small).fields), label="field")
    value = data.draw(st.integers(0, 2 ** (8 * width) - 1) | st.integers(0, 40), label="value")
    assert verdict(poke(small, at, width, value), measure=True) in HANDLED


def _flips(limit: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    return st.lists(
        st.tuples(st.integers(0, limit - 1), st.integers(0, 255)), min_size=1, max_size=8
    )


def flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for at, value in edits:
        b[at] = value
    return bytes(b)


@FAST
@given(st.data())
def test_byte_flips_in_header_metadata_and_tensor_table(
    small: bytes, synthetic: bytes, data: st.DataObject
) -> None:
    base = data.draw(st.sampled_from([small, synthetic]), label="file")
    edits = data.draw(_flips(walk(base).table_end), label="edits")
    assert verdict(flip(base, edits), measure=len(base) < 10_000) in HANDLED


@settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_real_model_header_mutations(real_head: bytes, tmp_path: Path, data: st.DataObject) -> None:
    """The default model's own metadata and tensor table, mutated, in a sparse full-size copy."""
    s = walk(real_head[: len(real_head) - 64 * 1024])
    if data.draw(st.booleans(), label="structural"):
        at, width, kind = data.draw(st.sampled_from(s.fields), label="field")
        mutated = poke(real_head, at, width, data.draw(st.sampled_from(ABSURD), label="value"))
    else:
        mutated = flip(real_head, data.draw(_flips(s.table_end), label="edits"))
    path = sparse_model(tmp_path / "real.gguf", mutated)
    with time_limit(TIME_LIMIT_S):
        try:
            f = open_gguf(path)
            f.metadata_summary()
            for name, t in list(f.tensors.items())[:8]:
                if len(t.shape) == 2:
                    f.quant_tensor(name).dequantize_rows(0, 1)
        except GGUFError:
            pass


# ---------------------------------------------------------------------------------------------
# Hand-made edge cases, each with the error it must name
# ---------------------------------------------------------------------------------------------


def error_of(data: bytes) -> str:
    with fuzz.as_file(data) as path, pytest.raises(GGUFError) as info:
        open_gguf(path).check_scales()
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def tensors_at(*offsets: int, ne0: int = 32, ttype: int = Q8_0) -> list[bytes]:
    return [tinfo(f"t{i}", [ne0, 2], ttype, off) for i, off in enumerate(offsets)]


HOSTILE = [
    (build(n_tensors=2**40), "tensor_count"),
    (build(n_kv=2**62), "kv_count"),
    (build([struct.pack("<Q", 2**63) + b"x"]), "string"),
    (build([*LLAMA_KVS, kv("s", STRING, "x")[:-9] + struct.pack("<Q", 2**63) + b"x"]), "string"),
    (build([*LLAMA_KVS, kv("a", ARRAY, struct.pack("<IQ", U32, 2**62))]), "array"),
    (build([*LLAMA_KVS, kv("a", ARRAY, struct.pack("<IQ", STRING, 2**62))]), "array"),
    (build([*LLAMA_KVS, kv("a", ARRAY, struct.pack("<IQ", ARRAY, 0))]), "nested array"),
    (
        build([*LLAMA_KVS, kv("a", ARRAY, struct.pack("<IQ", ARRAY, 1) + arr(U8, [1]))]),
        "nested array",
    ),
    (build([*LLAMA_KVS, kv("t", 13, b"\0" * 8)]), "value type"),
    (build([*LLAMA_KVS, kv("t", 0xFFFFFFFF, b"\0" * 8)]), "value type"),
    (build([*LLAMA_KVS, kv("a", ARRAY, struct.pack("<IQ", 99, 1))]), "value type"),
    (build([*LLAMA_KVS, kv(b"bad\xff\xfekey", U8, 1)]), "UTF-8"),
    (build(tensors=[tinfo(b"\xc3\x28", [8], F32_T, 0)], data=bytes(32)), "UTF-8"),
    (build([*LLAMA_KVS, kv("general.alignment", U32, 48)]), "alignment"),
    (build([*LLAMA_KVS, kv("general.alignment", U32, 0)]), "alignment"),
    (build([*LLAMA_KVS, kv("general.alignment", U64, 32)]), "alignment"),
    (build(tensors=tensors_at(0, 16), data=q8_0_blocks(4) + bytes(64)), "offset"),
    (build(tensors=tensors_at(0, 32), data=q8_0_blocks(4)), "overlapping"),
    (build(tensors=tensors_at(0, 2**63), data=q8_0_blocks(4)), "past the end"),
    (build(tensors=tensors_at(0, 96), data=q8_0_blocks(4)), "past the end"),
    (build(tensors=tensors_at(0, ne0=48), data=q8_0_blocks(4)), "multiple of 32"),
    (build(tensors=tensors_at(0, ttype=77), data=q8_0_blocks(4)), "ggml type"),
    (build(tensors=[tinfo("t", [], F32_T, 0)], data=bytes(32)), "n_dims"),
    (build(tensors=[tinfo("t", [1] * 5, F32_T, 0)], data=bytes(32)), "n_dims"),
    (build(tensors=[tinfo("t", [8, 0], F32_T, 0)], data=bytes(32)), "dimensions"),
    (build(tensors=[tinfo("t", [2**32, 2**32], F32_T, 0)], data=bytes(32)), "past the end"),
    (build([*LLAMA_KVS, LLAMA_KVS[1]]), "unique"),
    (
        build(tensors=[tinfo("t", [8], F32_T, 0), tinfo("t", [8], F32_T, 32)], data=bytes(64)),
        "unique",
    ),
    (build([*LLAMA_KVS, kv("v", U64, 5)[:-8]]), "past the end"),  # file ends before a value
    (build([*LLAMA_KVS, kv("v", U64, 5)[:-3]], [], align=1), "UINT64 value"),  # ... inside one
    (build(version=1), "version"),
    (build(version=3 << 24), "version"),  # a big-endian file read as little-endian
    (b"GGUF\x03\0\0", "header"),
    (b"GGML" + bytes(40), "magic"),
    (b"", "magic"),
    (build(tensors=tensors_at(0), data=q8_0_blocks(1, float("nan")) + q8_0_blocks(1)), "scale d"),
    (
        build(tensors=tensors_at(0), data=q8_0_blocks(1) + q8_0_blocks(1, float("-inf"))),
        "block 1 scale d",
    ),
]


@pytest.mark.parametrize(
    ("data", "says"), HOSTILE, ids=[f"{i:02d}-{says}" for i, (_, says) in enumerate(HOSTILE)]
)
def test_hand_made_hostile_files(data: bytes, says: str) -> None:
    assert says in error_of(data)
    assert verdict(data, measure=True) == "GGUFError"


def test_invalid_utf8_in_a_string_value_loads_with_replacement_characters() -> None:
    data = build([*LLAMA_KVS, kv("general.name", STRING, b"caf\xe9 \xff")])
    with fuzz.as_file(data) as path:
        assert open_gguf(path).get("general.name") == "caf\ufffd \ufffd"


def test_general_alignment_is_honoured() -> None:
    """A valid file with alignment 64: offsets must be multiples of 64, and are."""
    kvs = [*LLAMA_KVS, kv("general.alignment", U32, 64)]
    ok = build(kvs, tensors_at(0, 128), q8_0_blocks(2) + bytes(128 - 68) + q8_0_blocks(2), align=64)
    with fuzz.as_file(ok) as path:
        f = open_gguf(path)
        assert f.alignment == 64 and f.data_offset % 64 == 0
        assert f.tensors["t1"].offset == f.data_offset + 128
    assert "multiple of alignment 64" in error_of(
        build(kvs, tensors_at(0, 96), bytes(200), align=64)
    )


def test_heap_bound_tells_a_lean_loader_from_a_naive_one() -> None:
    """An 8000-token vocabulary of one-byte strings (~72 KB): the plain gguf.GGUFReader builds
    numpy objects per string and breaks the heap bound; the loader's offset table does not."""
    from gguf import GGUFReader

    vocab = kv("tokenizer.ggml.tokens", ARRAY, arr(STRING, ["a"] * 8_000))
    data = build([*LLAMA_KVS, vocab])
    assert verdict(data, measure=True) == "ok"
    with fuzz.as_file(data) as path:
        tracemalloc.start()
        GGUFReader(path)
        naive = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert naive > HEAP_SLACK + HEAP_PER_FILE_BYTE * len(data), naive


# ---------------------------------------------------------------------------------------------
# Regression inputs found by tools/fuzz_gguf.py
# ---------------------------------------------------------------------------------------------

REGRESSIONS = sorted(FUZZ_DIR.glob("*.gguf")) if FUZZ_DIR.is_dir() else []


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.name for p in REGRESSIONS])
def test_fuzz_regression_inputs(path: Path) -> None:
    """Loader findings replay through the loader target; `model-*` findings also build the model
    and run two tokens, where any GgufrefError is an acceptable verdict."""
    data = path.read_bytes()
    if path.name.startswith("model-"):
        with fuzz.as_file(data) as name, time_limit(TIME_LIMIT_S):
            assert fuzz.exercise_model(name) in {"ok", "GGUFError", "ModelError"}
    else:
        assert verdict(data, measure=True) in HANDLED
