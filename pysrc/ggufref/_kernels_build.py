"""cffi builder for ``ggufref._kernels``: compiles csrc/*.c into one extension (API mode).

At install, setup.py runs ``ffibuilder`` (``cffi_modules``). For development, build in place:

    cd /work/main && python3 pysrc/ggufref/_kernels_build.py

Compiler flags: plain ``-O3`` for the whole extension, and the SIMD kernels opt in per file
(``#pragma GCC target("avx2,...")`` in dot_avx2.c, ``"avx512..."`` in dot_avx512.c). So the
build never depends on the build machine's CPU, and at run time csrc/cpu.c (CPUID + XGETBV)
picks the best kernels the CPU and OS support, down to the scalar references.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
API_HEADER = CSRC / "ggufref_api.h"


def _cdef_text() -> str:
    """The declarations between the cffi markers of ggufref_api.h (one source of truth)."""
    text = API_HEADER.read_text()
    body = text.split("// cffi-begin", 1)[1].split("// cffi-end", 1)[0]
    lines = [line.split("//", 1)[0].rstrip() for line in body.splitlines()]
    return "\n".join(line for line in lines if line.strip())


def _check_compiler() -> None:
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        raise SystemExit(
            f"ggufref: no C compiler found (looked for {cc!r}); the native kernels need one. "
            "Install gcc (Debian: apt-get install build-essential) or set CC."
        )


def make_builder(absolute_paths: bool = False) -> FFI:
    """The FFI builder. setuptools wants sources relative to setup.py; a direct build (which
    compiles in a temporary directory) needs absolute ones."""
    builder = FFI()
    builder.cdef(_cdef_text())
    sources = sorted(CSRC.glob("*.c"))
    builder.set_source(
        "ggufref._kernels",
        '#include "ggufref_api.h"',
        sources=[str(p if absolute_paths else p.relative_to(ROOT)) for p in sources],
        include_dirs=[str(CSRC if absolute_paths else CSRC.relative_to(ROOT))],
        extra_compile_args=["-O3", "-std=gnu11", "-ffp-contract=off", "-Wall", "-Wextra"],
        libraries=["m", "pthread"],
    )
    return builder


ffibuilder = make_builder()


def build_in_place(verbose: bool = False) -> Path:
    """Compile into pysrc/ggufref/ (development without pip install -e .)."""
    _check_compiler()
    tmp = ROOT / "build" / "cffi"
    built = Path(make_builder(True).compile(tmpdir=str(tmp), verbose=verbose))
    # Use the file name `pip install -e .` gives the extension (cffi builds it for the stable
    # ABI), and remove other builds: importlib prefers `.cpython-311-...so` over `.abi3.so`,
    # so a stale development build would otherwise shadow a fresh install.
    # Copy next to the target, then rename: a process that has the old build loaded keeps its
    # (unlinked) file, where overwriting it in place would crash that process.
    package = ROOT / "pysrc" / "ggufref"
    target = package / "_kernels.abi3.so"
    for old in package.glob("_kernels*.so"):
        if old != target:
            old.unlink()
    staging = package / f"._kernels.{os.getpid()}.tmp"
    shutil.copy2(built, staging)
    os.replace(staging, target)
    return target


if __name__ == "__main__":
    print(f"built {build_in_place(verbose='-v' in sys.argv)}")
