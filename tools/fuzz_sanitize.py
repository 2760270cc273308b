"""Build the C kernels with AddressSanitizer + UndefinedBehaviorSanitizer and run tests on them.

    python tools/fuzz_sanitize.py            # build into build/sanitize/, then run the tests
    python tools/fuzz_sanitize.py --build    # only build

The sanitized extension is a second copy of the ``ggufref`` package in ``build/sanitize/``
(sources copied, ``_kernels.abi3.so`` rebuilt with ``-fsanitize=address,undefined``), put first
on ``PYTHONPATH``, so the installed build is never touched. CPython itself is not
instrumented, so the ASan runtime must be loaded first (``LD_PRELOAD``), and leak detection is
off (the interpreter keeps memory until exit on purpose). Any report aborts the test run.

`make test-sanitize` runs this.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "sanitize"
# The tests that reach C: kernels, fused ops, the loader and its fuzz regressions, and the
# kernel-boundary cases of the hostile-input suite.
TESTS = [
    "tests/test_kernels.py",
    "tests/test_ops.py",
    "tests/test_gguf_file.py",
    "tests/test_fuzz_gguf.py",
    "tests/test_hostile_kernels.py",
]
# RSS budgets do not hold under ASan (shadow memory, quarantine): those tests run in `make test`
DESELECT = [
    "tests/test_gguf_file.py::test_opening_the_default_model_does_not_read_it_into_memory",
]
FLAGS = [
    "-O1",
    "-g",
    "-std=gnu11",
    "-ffp-contract=off",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all",
]


def build(out: Path = OUT) -> Path:
    """Copy the package to ``out`` and compile its kernels with the sanitizers."""
    sys.path.insert(0, str(ROOT / "pysrc"))
    from cffi import FFI

    from ggufref._kernels_build import CSRC, _cdef_text

    package = out / "ggufref"
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(
        ROOT / "pysrc" / "ggufref",
        package,
        ignore=shutil.ignore_patterns("_kernels*.so", "__pycache__", "._kernels*"),
    )
    builder = FFI()
    builder.cdef(_cdef_text())
    builder.set_source(
        "ggufref._kernels",
        '#include "ggufref_api.h"',
        sources=[str(p) for p in sorted(CSRC.glob("*.c"))],
        include_dirs=[str(CSRC)],
        extra_compile_args=FLAGS,
        extra_link_args=["-fsanitize=address,undefined"],
        libraries=["m", "pthread"],
    )
    built = Path(builder.compile(tmpdir=str(out / "cffi")))
    target = package / "_kernels.abi3.so"
    shutil.copy2(built, target)
    return target


def asan_runtime() -> str:
    cc = os.environ.get("CC", "gcc")
    path = subprocess.run(
        [cc, "-print-file-name=libasan.so"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not os.path.isabs(path):
        raise SystemExit(f"fuzz_sanitize: {cc} has no AddressSanitizer runtime (libasan)")
    return path


def run_tests(out: Path = OUT, extra: list[str] | None = None) -> int:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(out), os.environ.get("PYTHONPATH", "")]).rstrip(":"),
        "LD_PRELOAD": asan_runtime(),
        # reports go to files: pytest captures stderr, and an abort would lose them
        "ASAN_OPTIONS": f"detect_leaks=0:abort_on_error=1:halt_on_error=1:log_path={out}/asan",
        "UBSAN_OPTIONS": f"halt_on_error=1:print_stacktrace=1:log_path={out}/ubsan",
        "PYTHONMALLOC": "malloc",  # so ASan sees Python's buffers too
    }
    check = "import ggufref._kernels as k; print(k.__file__)"
    where = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True)
    if str(out) not in where.stdout:
        print(f"fuzz_sanitize: the sanitized build is not the one imported: {where}")
        return 1
    for old in [*out.glob("asan.*"), *out.glob("ubsan.*")]:
        old.unlink()
    deselect = [f"--deselect={t}" for t in DESELECT]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS, *deselect]
    cmd += extra or []
    rc = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    reports = sorted([*out.glob("asan.*"), *out.glob("ubsan.*")])
    for report in reports:
        print(f"--- {report}\n{report.read_text()}")
    return rc or (1 if reports else 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--build", action="store_true", help="only build")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (-k ..., -x)")
    args = ap.parse_args()
    print(f"built {build()}")
    return 0 if args.build else run_tests(extra=args.pytest_args)


if __name__ == "__main__":
    raise SystemExit(main())
