"""Coverage-guided fuzzing of the GGUF loader (atheris / libFuzzer).

Every input is a would-be GGUF file. It goes through what a user's file goes through before the
first matmul: ``open_gguf`` (header, metadata, tensor table, bounds), every metadata value, a
``QuantTensor`` for each 2-D tensor (one row decoded, and the C kernel run on a few rows when it
is built), each 1-D tensor as a vector, and the scan of the fp16 block scales. The only allowed
outcomes are a clean load or ``GGUFError``; anything else (another exception, a crash, a hang) is
a finding, saved under ``tests/data/fuzz/`` so that ``tests/test_fuzz_gguf.py`` replays it forever.

    python tools/fuzz_gguf.py --seconds 300          # fuzz for five minutes
    python tools/fuzz_gguf.py --replay tests/data/fuzz  # run every saved input once

The seed corpus is written on the fly: tiny hand-made GGUF files (every value type, a few
tensor types) and the header + metadata of a synthetic model.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGRESSION_DIR = ROOT / "tests" / "data" / "fuzz"
sys.path.append(str(ROOT / "pysrc"))  # after PYTHONPATH / an installed ggufref

MAX_LINEAR_ROWS = 4  # rows of each weight sent through the C kernel (enough to reach every path)


# tag::exercise[]
def exercise(path: str | os.PathLike[str]) -> str:
    """Load `path` the way the engine would; "ok" or "GGUFError". Any other exception escapes."""
    from ggufref import formats
    from ggufref.errors import GGUFError
    from ggufref.gguf_file import open_gguf

    try:
        f = open_gguf(path)
        for key in f.keys():  # noqa: SIM118 - keys() skips the GGUF.* header fields
            f.get(key)
            f.array_len(key)
        f.metadata_summary()
        for name, t in f.tensors.items():
            if len(t.shape) == 2 and t.qtype in formats.LAYOUTS:
                _touch_weight(f.quant_tensor(name))
            elif len(t.shape) == 1 and t.shape[0] <= 1 << 16:
                f.vector(name)
        f.check_scales()
        return "ok"
    except GGUFError:
        return "GGUFError"


# end::exercise[]


def exercise_model(path: str | os.PathLike[str]) -> str:
    """`exercise`, then build the Model (shape and memory checks) and run two tokens through it.
    "ok" or the name of the GgufrefError; any other exception escapes."""
    import numpy as np

    from ggufref.errors import GgufrefError
    from ggufref.gguf_file import open_gguf
    from ggufref.model.base import Model

    outcome = exercise(path)
    if outcome != "ok":
        return outcome
    try:
        model = Model(open_gguf(path), n_ctx=8)
        with np.errstate(all="ignore"):
            model.forward([0, 1])
        return "ok"
    except GgufrefError as err:
        return type(err).__name__


TARGETS = {"loader": exercise, "model": exercise_model}


def _touch_weight(w: object) -> None:
    """Decode one row and, if the kernels are built, run a few rows through the C matmul."""
    import numpy as np

    from ggufref.weights import QuantTensor

    assert isinstance(w, QuantTensor)
    with np.errstate(all="ignore"):  # random bytes make inf/NaN scales: that is fine here
        w.dequantize_rows(0, 1)
        kernels = _kernels()
        if kernels is not None and w.cols <= 1 << 16:
            rows = min(w.rows, MAX_LINEAR_ROWS)
            head = QuantTensor(w.qtype, (rows, w.cols), w.data[:rows], w.name)
            kernels.linear(np.ones(w.cols, dtype=np.float32), head)


_KERNELS: list[object] = []


def _kernels():  # type: ignore[no-untyped-def]
    if not _KERNELS:
        try:
            from ggufref import kernels

            _KERNELS.append(kernels)
        except ImportError:
            _KERNELS.append(None)
    return _KERNELS[0]


# ---------------------------------------------------------------------------------------------
# Inputs in memory: a memfd is a file without a disk
# ---------------------------------------------------------------------------------------------


@contextmanager
def as_file(data: bytes) -> Iterator[str]:
    """A path whose content is `data` (a memfd where Linux has one, else a temp file)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("gguf-fuzz")
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(suffix=".gguf") as tmp:
        tmp.write(data)
        tmp.flush()
        yield tmp.name


# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------


def minimal_gguf(path: str | os.PathLike[str], *, scales: float = 1.0) -> Path:
    """A ~2 KB GGUF that loads cleanly: every value type, and Q8_0, Q4_K, F16, F32 tensors."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as T

    from ggufref.testing.models import random_blocks

    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(32)
    w.add_block_count(1)
    w.add_feed_forward_length(64)
    w.add_head_count(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0 * scales)
    w.add_bool("ggufref.fuzz.flag", True)
    w.add_int8("ggufref.fuzz.i8", -3)
    w.add_uint16("ggufref.fuzz.u16", 7)
    w.add_int64("ggufref.fuzz.i64", -(1 << 40))
    w.add_float64("ggufref.fuzz.f64", 0.5)
    w.add_array("ggufref.fuzz.ints", [1, 2, 3])
    w.add_token_list(["<s>", "</s>", "a", "b", "\u00e9"])
    w.add_token_scores([0.0, 0.0, -1.0, -2.0, -3.0])
    w.add_tensor("token_embd.weight", random_blocks(T.Q8_0, 5, 32, 1.0, rng), raw_dtype=T.Q8_0)
    w.add_tensor("blk.0.attn_q.weight", random_blocks(T.Q4_K, 2, 256, 0.1, rng), raw_dtype=T.Q4_K)
    w.add_tensor("blk.0.ffn_up.weight", rng.standard_normal((2, 8)).astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def tiny_model_gguf(path: str | os.PathLike[str]) -> Path:
    """A complete ~20 KB llama model (n_embd 32, one layer, 8-token vocab) for the model target:
    small enough that libFuzzer mutates its hyperparameters and tensor table, not just bulk."""
    import gguf
    import numpy as np
    from gguf import GGMLQuantizationType as T

    from ggufref.testing.models import random_blocks

    rng = np.random.default_rng(1)
    n_embd, n_ff, n_vocab, hd = 32, 64, 8, 16
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(64)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    mats = [  # (name, format, rows, cols)
        ("token_embd.weight", T.Q8_0, n_vocab, n_embd),
        ("output.weight", T.F16, n_vocab, n_embd),
        ("blk.0.attn_q.weight", T.Q8_0, 2 * hd, n_embd),
        ("blk.0.attn_k.weight", T.Q4_0, hd, n_embd),
        ("blk.0.attn_v.weight", T.Q5_0, hd, n_embd),
        ("blk.0.attn_output.weight", T.Q4_1, n_embd, 2 * hd),
        ("blk.0.ffn_gate.weight", T.Q5_1, n_ff, n_embd),
        ("blk.0.ffn_up.weight", T.Q8_0, n_ff, n_embd),
        ("blk.0.ffn_down.weight", T.Q4_0, n_embd, n_ff),
    ]
    for name, qtype, rows, cols in mats:
        raw = random_blocks(qtype, rows, cols, 0.2, rng)
        if qtype == T.F16:
            w.add_tensor(name, raw.view(np.float16))
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
    for name in ("output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"):
        w.add_tensor(name, np.ones(n_embd, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)


def vocab_only_gguf(path: str | os.PathLike[str]) -> Path:
    """Metadata and no tensors, like llama.cpp's vocab-only files: here the file ends right
    after the last value, so truncations hit the values themselves."""
    import gguf

    w = gguf.GGUFWriter(str(path), "vocab")  # an architecture with no required keys
    w.add_token_list(["<unk>", "<s>", "</s>", "x"])
    w.add_bos_token_id(1)
    w.add_uint64("ggufref.fuzz.last", 1 << 33)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return Path(path)


def seed_corpus(out_dir: Path) -> list[Path]:
    """Write the seeds: the minimal file, a tiny complete model and the metadata region of a
    synthetic gemma3 model."""
    from ggufref.testing.models import write_model

    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = [minimal_gguf(out_dir / "minimal.gguf"), tiny_model_gguf(out_dir / "tiny-model.gguf")]
    seeds.append(vocab_only_gguf(out_dir / "vocab-only.gguf"))
    with tempfile.TemporaryDirectory() as tmp:
        model = write_model(Path(tmp) / "gemma3.gguf", "gemma3").read_bytes()
    head = out_dir / "gemma3-head.gguf"
    head.write_bytes(model[: 64 * 1024])  # the vocab and the tensor table; the data is cut off
    seeds.append(head)
    return seeds


# ---------------------------------------------------------------------------------------------
# A structure walker, independent of the loader: where each field of a GGUF file is
# ---------------------------------------------------------------------------------------------

STRING, ARRAY = 8, 9  # GGUF value types
SCALAR_FMT = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}  # fmt: skip
MAX_FIELDS = 400  # enough to reach the tensor table behind a long vocabulary


@dataclass
class Structure:
    boundaries: list[int] = dc_field(default_factory=list)  # where a structure starts/ends
    fields: list[tuple[int, int, str]] = dc_field(default_factory=list)  # (offset, width, kind)
    table_end: int = 0  # end of the tensor infos
    data_start: int = 0
    data_end: int = 0  # end of the last tensor's data


def walk(b: bytes) -> Structure:
    """Boundaries and fields (counts, lengths, types, dims, offsets, scalar values) of a GGUF
    file, as far as its bytes make sense; stops quietly at the first thing that does not."""
    s = Structure(boundaries=[0, 4, 8, 16, 24])
    s.fields += [(8, 8, "tensor_count"), (16, 8, "kv_count")]
    with suppress(struct.error, KeyError, ValueError, OverflowError, MemoryError):
        _walk(b, s)
    return s


def _walk(b: bytes, s: Structure) -> None:
    import numpy as np
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    def u(fmt: str, at: int) -> int:
        return struct.unpack_from("<" + fmt, b, at)[0]

    def skip_value(vtype: int, at: int, kind: str) -> int:
        if vtype == STRING:
            if len(s.fields) < MAX_FIELDS:
                s.fields.append((at, 8, f"{kind}_len"))
            return at + 8 + u("Q", at)
        if vtype == ARRAY:
            itype, count = u("I", at), u("Q", at + 4)
            s.fields += [(at, 4, "array_type"), (at + 4, 8, "array_count")]
            at += 12
            if itype != STRING:
                return at + count * struct.calcsize(SCALAR_FMT[itype])
            for _ in range(count):
                at = skip_value(STRING, at, "item")
                if at > len(b):
                    raise struct.error("past the end")
            return at
        s.fields.append((at, struct.calcsize(SCALAR_FMT[vtype]), "value" + SCALAR_FMT[vtype]))
        return at + struct.calcsize(SCALAR_FMT[vtype])

    n_tensors, n_kv = struct.unpack_from("<QQ", b, 8)
    pos, align = 24, 32
    for _ in range(n_kv):
        s.boundaries.append(pos)
        s.fields.append((pos, 8, "key_len"))
        key_end = pos + 8 + u("Q", pos)
        vtype = u("I", key_end)
        s.fields.append((key_end, 4, "value_type"))
        pos = skip_value(vtype, key_end + 4, "str")
        if b[key_end - 17 : key_end] == b"general.alignment" and vtype == 4:
            align = u("I", key_end + 4) or 32
    spans = []
    for _ in range(n_tensors):
        s.boundaries.append(pos)
        s.fields.append((pos, 8, "name_len"))
        pos += 8 + u("Q", pos)
        n_dims = u("I", pos)
        s.fields.append((pos, 4, "n_dims"))
        ne = [u("Q", pos + 4 + 8 * i) for i in range(min(n_dims, 8))]
        s.fields += [(pos + 4 + 8 * i, 8, "dim") for i in range(len(ne))]
        pos += 4 + 8 * n_dims
        ttype, offset = u("I", pos), u("Q", pos + 4)
        s.fields += [(pos, 4, "ggml_type"), (pos + 4, 8, "offset")]
        pos += 12
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ttype)]
        spans.append((offset, int(np.prod(ne, dtype=object)) // block * type_size))
    s.table_end = pos
    s.data_start = pos + (-pos % align)
    s.boundaries += [s.table_end, s.data_start]
    for offset, nbytes in spans:
        start = s.data_start + offset
        s.boundaries += [start, start + nbytes // 2, start + nbytes]
    s.data_end = max((s.data_start + o + n for o, n in spans), default=s.data_start)


# ---------------------------------------------------------------------------------------------
# A structure-aware mutator: half the time, a cut or an edge value where the walker found a field
# ---------------------------------------------------------------------------------------------

EDGE_INTS = (0, 1, 2, 3, 7, 255, 2**15, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63,
             2**64 - 1)  # fmt: skip
EDGE_FLOATS = (0.0, -1.0, 1e-45, 1e38, float("inf"), float("-inf"), float("nan"))


def poke(data: bytes, at: int, width: int, kind: str, rng: random.Random) -> bytes:
    """`data` with the field at `at` replaced by an edge value of its kind."""
    if kind in ("valuef", "valued"):
        raw = struct.pack("<" + kind[-1], rng.choice(EDGE_FLOATS))
    else:
        raw = (rng.choice(EDGE_INTS) & ((1 << 8 * width) - 1)).to_bytes(width, "little")
    return data[:at] + raw + data[at + width :]


def structure_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    rng = random.Random(seed)
    r = rng.random()
    if r < 0.5:
        s = walk(data)
        if r < 0.15:  # cut the file where a structure or a field starts (or a byte either side)
            cuts = s.boundaries + [at for at, _, _ in s.fields]
            return data[: max(0, rng.choice(cuts) + rng.choice((-1, 0, 0, 1)))]
        values = [f for f in s.fields if f[2].startswith("value")]  # hyperparameters, mostly
        pool = values if values and rng.random() < 0.5 else s.fields
        if pool:
            return poke(data, *rng.choice(pool), rng)[:max_size]
    return atheris.Mutate(data, max_size)


# ---------------------------------------------------------------------------------------------
# The fuzz loop
# ---------------------------------------------------------------------------------------------


def save_crash(data: bytes, err: BaseException, which: str = "loader") -> Path:
    """Keep a crashing input as a regression file named by target, exception type and hash
    (the replay test runs `model-*` files through exercise_model, the others through exercise)."""
    REGRESSION_DIR.mkdir(parents=True, exist_ok=True)
    name = f"{which}-{type(err).__name__}-{hashlib.sha256(data).hexdigest()[:16]}.gguf"
    path = REGRESSION_DIR / name
    path.write_bytes(data)
    return path


# An input that takes longer is a finding (libFuzzer's own -timeout would end the whole run).
HANG_S = 5.0


class Hang(Exception):
    """An input took longer than HANG_S."""


@contextmanager
def hang_guard(seconds: float) -> Iterator[None]:
    def on_alarm(signum, frame):  # type: ignore[no-untyped-def]
        raise Hang(f"no verdict after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Stats:
    def __init__(self) -> None:
        self.runs = 0
        self.outcomes: dict[str, int] = {}
        self.crashes: dict[str, Path] = {}  # "Type: message" -> saved input


def make_target(stats: Stats, which: str = "loader"):  # type: ignore[no-untyped-def]
    run = TARGETS[which]

    def target(data: bytes) -> None:
        stats.runs += 1
        with as_file(data) as path:
            try:
                with hang_guard(HANG_S):
                    outcome = run(path)
            except Exception as err:  # noqa: BLE001 - every other exception is a finding
                where = traceback.extract_tb(err.__traceback__)[-1]
                site = f"{Path(where.filename).name}:{where.lineno}"
                key = f"{type(err).__name__} at {site}: {str(err)[:100]}"
                if key not in stats.crashes:
                    stats.crashes[key] = save_crash(data, err, which)
                    print(f"\nNEW CRASH {key}\n  saved {stats.crashes[key]}", file=sys.stderr)
                    traceback.print_exc(limit=-3)
                outcome = "crash"
        stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1

    return target


def fuzz(seconds: int, corpus: Path, max_len: int, which: str = "loader") -> Stats:
    import atheris
    import numpy  # noqa: F401 - imported first so that only gguf and ggufref are instrumented

    with atheris.instrument_imports():
        import gguf  # noqa: F401

        import ggufref.formats  # noqa: F401
        import ggufref.gguf_file  # noqa: F401
        import ggufref.weights  # noqa: F401

        if which == "model":
            import ggufref.config  # noqa: F401
            import ggufref.model.base  # noqa: F401
            import ggufref.model.llama  # noqa: F401
            import ggufref.model.ops  # noqa: F401
    import ggufref.errors  # noqa: F401

    _kernels()
    seed_corpus(corpus / "seeds")
    stats = Stats()
    target = make_target(stats, which)
    t0 = time.monotonic()

    def timed(data: bytes) -> None:
        target(data)
        if time.monotonic() - t0 > seconds:
            report(stats, time.monotonic() - t0)
            os._exit(0)  # libFuzzer has no clean "stop now" from Python

    args = [
        sys.argv[0],
        str(corpus / "work"),
        str(corpus / "seeds"),
        f"-max_len={max_len}",
        "-timeout=30",
        "-rss_limit_mb=4096",
        "-print_final_stats=1",
        "-reload=0",
    ]
    (corpus / "work").mkdir(parents=True, exist_ok=True)
    atheris.Setup(args, timed, custom_mutator=structure_mutator)
    atheris.Fuzz()
    return stats


def report(stats: Stats, elapsed: float) -> None:
    print(
        f"\n{stats.runs} inputs in {elapsed:.0f} s ({stats.runs / max(elapsed, 1e-9):.0f}/s); "
        f"outcomes {stats.outcomes}; {len(stats.crashes)} distinct crashes",
        file=sys.stderr,
    )
    for key, path in stats.crashes.items():
        print(f"  {key}\n    {path}", file=sys.stderr)


def replay(paths: list[Path], which: str) -> int:
    stats = Stats()
    target = make_target(stats, which)
    files = [p for d in paths for p in (sorted(d.iterdir()) if d.is_dir() else [d]) if p.is_file()]
    t0 = time.monotonic()
    for p in files:
        target(p.read_bytes())
    report(stats, time.monotonic() - t0)
    return 1 if stats.crashes else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    ap.add_argument(
        "--corpus",
        type=Path,
        default=Path(tempfile.gettempdir()) / "ggufref-fuzz",
        help="working corpus directory (kept between runs)",
    )
    ap.add_argument("--max-len", type=int, default=80 * 1024, help="largest input in bytes")
    ap.add_argument("--replay", type=Path, nargs="*", help="replay files or dirs, no fuzzing")
    ap.add_argument(
        "--target",
        choices=sorted(TARGETS),
        default="loader",
        help="loader: open_gguf + metadata + weights; model: + Model + 2 tokens",
    )
    args = ap.parse_args()
    if args.replay is not None:
        return replay(args.replay or [REGRESSION_DIR], args.target)
    fuzz(args.seconds, args.corpus, args.max_len, args.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
