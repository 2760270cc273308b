"""The loader: zero-copy opening, metadata accessors, and one GGUFError per kind of bad file."""

from __future__ import annotations

import resource
import struct
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.errors import GGUFError
from ggufref.gguf_file import _strings_in_one_decode, open_gguf
from ggufref.model_files import resolve_model
from ggufref.testing.models import write_model


def _tiny(
    path: Path, arch: str = "llama", skip_key: str | None = None, strings: list[bytes] | None = None
) -> Path:
    """A small valid GGUF: two tensors (one Q8_0 matrix, one F32 vector) and the llama keys
    (and a string array test.strings first, when given)."""
    w = gguf.GGUFWriter(str(path), arch)
    if strings is not None:
        w.add_array("test.strings", strings)
    keys = {
        "context_length": 64,
        "embedding_length": 32,
        "block_count": 1,
        "feed_forward_length": 64,
        "attention.head_count": 4,
        "attention.layer_norm_rms_epsilon": 1e-5,
    }
    for k, v in keys.items():
        if k == skip_key:
            continue
        key = f"{arch}.{k}"
        w.add_float32(key, v) if isinstance(v, float) else w.add_uint32(key, v)
    w.add_array("tokenizer.ggml.tokens", ["a", "b", "ccc"])
    mat = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(mat, T.Q8_0), raw_dtype=T.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(32, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _tensor_info_offsets(path: Path) -> list[dict[str, int]]:
    """Where each tensor info's type and offset fields sit in the file (via gguf's reader)."""
    r = gguf.GGUFReader(str(path))
    out = []
    for t in r.tensors:
        f = t.field
        name_len = len(bytes(f.parts[1]))
        type_at = f.offset + 8 + name_len + 4 + 8 * len(t.shape)
        out.append(
            {
                "type": type_at,
                "offset": type_at + 4,
                "data": t.data_offset,
                "rel": int(f.parts[5][0]),
            }
        )
    return out


def _patch(path: Path, at: int, data: bytes) -> Path:
    raw = bytearray(path.read_bytes())
    raw[at : at + len(data)] = data
    path.write_bytes(bytes(raw))
    return path


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return _tiny(tmp_path / "tiny.gguf")


def test_valid_file_opens_with_typed_metadata(tiny: Path) -> None:
    f = open_gguf(tiny)
    assert f.version == 3 and f.arch == "llama" and f.alignment == 32
    assert f.get_int(f.arch_key("embedding_length")) == 32
    assert f.arch_get("attention.head_count") == 4
    assert f.get("tokenizer.ggml.tokens") == ["a", "b", "ccc"]
    assert f.array_len("tokenizer.ggml.tokens") == 3
    w = f.quant_tensor("blk.0.attn_q.weight")
    assert w.shape == (4, 32) and w.qtype == T.Q8_0 and w.data.shape == (4, 34)
    with pytest.raises(GGUFError, match="an integer"):
        f.get_int("tokenizer.ggml.tokens")


def test_tensor_data_is_a_view_of_the_mapped_file(tiny: Path) -> None:
    f = open_gguf(tiny)
    t = f.tensors["blk.0.attn_q.weight"]
    assert isinstance(t.raw.base, np.memmap) or isinstance(t.raw, np.memmap)
    assert not t.raw.flags.owndata
    assert bytes(t.raw[:34]) == tiny.read_bytes()[t.offset : t.offset + 34]


def test_opening_the_default_model_does_not_read_it_into_memory() -> None:
    path = resolve_model(None, progress=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    f = open_gguf(path)
    assert len(f.tensors) == 236
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 60, f"opening grew peak RSS by {grown_mb:.0f} MiB (file: 241 MiB)"


def test_wrong_magic(tiny: Path) -> None:
    with pytest.raises(GGUFError, match=r"magic: found b'XXUF', expected b'GGUF'"):
        open_gguf(_patch(tiny, 0, b"XXUF"))


def test_non_gguf_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a model\n")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        open_gguf(p)


def test_unsupported_version(tiny: Path) -> None:
    with pytest.raises(GGUFError, match="version: found 7, expected 2 or 3"):
        open_gguf(_patch(tiny, 4, struct.pack("<I", 7)))


@pytest.mark.parametrize("keep", [0, 3, 23, 60, 200])
def test_truncated_file(tiny: Path, keep: int) -> None:
    tiny.write_bytes(tiny.read_bytes()[:keep])
    with pytest.raises(GGUFError):
        open_gguf(tiny)


def test_truncated_inside_tensor_data_names_the_tensor(tiny: Path) -> None:
    data = tiny.read_bytes()
    tiny.write_bytes(data[:-10])
    with pytest.raises(GGUFError, match="output_norm.weight.*past the end of the file"):
        open_gguf(tiny)


def test_tensor_count_far_larger_than_the_file_allows(tiny: Path) -> None:
    with pytest.raises(GGUFError, match=r"tensor_count: found 1099511627776, expected at most"):
        open_gguf(_patch(tiny, 8, struct.pack("<Q", 2**40)))


def test_unknown_type_id(tiny: Path) -> None:
    at = _tensor_info_offsets(tiny)[0]["type"]
    with pytest.raises(GGUFError, match="ggml type id: found 99, expected a known ggml type"):
        open_gguf(_patch(tiny, at, struct.pack("<I", 99)))


def test_tensor_offset_beyond_the_end(tiny: Path) -> None:
    at = _tensor_info_offsets(tiny)[1]["offset"]
    with pytest.raises(GGUFError, match="past the end of the file"):
        open_gguf(_patch(tiny, at, struct.pack("<Q", 2**33)))


def test_misaligned_tensor_offset(tiny: Path) -> None:
    info = _tensor_info_offsets(tiny)[1]
    with pytest.raises(GGUFError, match="a multiple of alignment 32"):
        open_gguf(_patch(tiny, info["offset"], struct.pack("<Q", info["rel"] + 4)))


def test_overlapping_tensors(tiny: Path) -> None:
    infos = _tensor_info_offsets(tiny)
    with pytest.raises(GGUFError, match="overlapping data"):
        open_gguf(_patch(tiny, infos[1]["offset"], struct.pack("<Q", infos[0]["rel"])))


def test_row_length_not_a_multiple_of_the_block_size(tiny: Path) -> None:
    r = gguf.GGUFReader(str(tiny))
    t = r.tensors[0]
    ne0_at = t.field.offset + 8 + len(bytes(t.field.parts[1])) + 4
    with pytest.raises(GGUFError, match="row length .* a multiple of 32"):
        open_gguf(_patch(tiny, ne0_at, struct.pack("<Q", 33)))


def test_activation_only_format_is_refused_as_a_weight(tmp_path: Path) -> None:
    """Q8_K has a layout (activations use it) but is not in formats.WEIGHT_TYPES: a weight
    stored in it is refused by the loader, naming the tensor, not by the kernels."""
    with np.errstate(all="ignore"):  # random Q8_K blocks (fp32 d) overflow while being scaled
        path = write_model(tmp_path / "q8k.gguf", "llama", mix={"ffn_up": T.Q8_K})
    f = open_gguf(path)
    with pytest.raises(GGUFError, match=r"'blk.0.ffn_up.weight': type: found Q8_K, expected one"):
        f.quant_tensor("blk.0.ffn_up.weight")
    assert f.quant_tensor("blk.0.ffn_down.weight").qtype in formats.WEIGHT_TYPES


def test_missing_architecture_key_is_named(tmp_path: Path) -> None:
    p = _tiny(tmp_path / "nokey.gguf", skip_key="embedding_length")
    with pytest.raises(GGUFError, match="llama.embedding_length: found missing"):
        open_gguf(p)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="no such file"):
        open_gguf(tmp_path / "absent.gguf")
    with pytest.raises(GGUFError, match="not a regular file"):
        open_gguf(tmp_path)


# ---------------------------------------------------------------------------------------------
# The parser against gguf's reader (the oracle)


def _oracle(path: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """gguf.GGUFReader's view: key -> value, tensor -> (type, numpy shape, absolute offset)."""
    r = gguf.GGUFReader(str(path))
    meta = {}
    for key, f in r.fields.items():
        if not key.startswith("GGUF."):
            meta[key] = f.contents()
    tensors = {
        t.name: (t.tensor_type, tuple(int(d) for d in reversed(t.shape.tolist())), t.data_offset)
        for t in r.tensors
    }
    return meta, tensors


@pytest.mark.parametrize("which", ["llama", "qwen2", "qwen3", "gemma3"])
def test_parser_agrees_with_gguf_reader(which: str, tmp_path: Path) -> None:
    """Every key and tensor info of a synthetic model (the default model's 262144-token
    vocabulary takes gguf's reader a minute on a loaded machine; the parity tests load it)."""
    path = write_model(tmp_path / "m.gguf", which)
    meta, tensors = _oracle(path)
    f = open_gguf(path)
    assert f.keys() == list(meta)
    for key, value in meta.items():
        ours = f.get(key)
        if isinstance(value, float):
            assert ours == pytest.approx(value, rel=1e-7), key
        elif isinstance(value, list) and value and isinstance(value[0], float):
            np.testing.assert_allclose(ours, value, rtol=1e-7, err_msg=key)
        else:
            assert ours == value, key
    assert {n: (t.qtype, t.shape, t.offset) for n, t in f.tensors.items()} == tensors


# ---------------------------------------------------------------------------------------------
# String arrays: the C walk and the one-decode split against decoding each string alone


def _string_array_file(path: Path, items: list[bytes]) -> Path:
    return _tiny(path, strings=items)


def _hostile_strings(seed: int, n: int) -> list[bytes]:
    """Valid UTF-8, random bytes, sequences cut off at the end of a string, lone continuation
    bytes, empty strings."""
    rng = np.random.default_rng(seed)
    pieces = [b"", b"\xe4\xb8", b"\xf0\x9f", b"\x80", b"\xc3", "é".encode(), "😀".encode(), b"ab"]
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 4))
        s = b"".join(pieces[int(i)] for i in rng.integers(0, len(pieces), k))
        if rng.random() < 0.3:
            s += rng.integers(1, 256, int(rng.integers(0, 6)), dtype=np.uint8).tobytes()
        out.append(s)
    return out


@pytest.mark.parametrize("with_nul", [False, True])
def test_string_arrays_decode_as_each_string_alone(with_nul: bool, tmp_path: Path) -> None:
    items = _hostile_strings(1, 3000)
    if with_nul:  # a NUL inside a string: the table is decoded string by string
        items[1234] = b"a\x00b"
    f = open_gguf(_string_array_file(tmp_path / "s.gguf", items))
    expected = [s.decode("utf-8", errors="replace") for s in items]
    assert f.get("test.strings") == expected
    # the one-decode path took the table, or (a NUL inside a string) handed it back
    one = _strings_in_one_decode(f._mm, *f.entries["test.strings"].strings)
    assert one == (None if with_nul else expected)


@pytest.mark.parametrize("cut", [3, 9, 20])
def test_a_string_array_cut_short_names_the_string(cut: int, tmp_path: Path) -> None:
    """The file ends inside the array: in string 600's length field or in its bytes."""
    items = [b"string %04d" % i + b"x" * 16 for i in range(1000)]
    path = _string_array_file(tmp_path / "s.gguf", items)
    raw = path.read_bytes()
    at = raw.index(items[600]) - 8  # string 600's length field
    path.write_bytes(raw[: at + cut])
    with pytest.raises(GGUFError, match=r"string 600 of 1000 \(test\.strings\)"):
        open_gguf(path)


def test_a_string_longer_than_the_file_names_the_string(tmp_path: Path) -> None:
    items = [b"first", b"second string", b"third"]
    path = _string_array_file(tmp_path / "s.gguf", items)
    raw = path.read_bytes()
    at = raw.index(b"second string") - 8
    _patch(path, at, struct.pack("<Q", 1 << 62))
    with pytest.raises(GGUFError, match=r"string 1 of 3 \(test\.strings\).*past the end"):
        open_gguf(path)
