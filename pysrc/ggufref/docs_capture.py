"""Measured and captured docs data: what ``ggufref docs-gen --capture NAME`` writes to docs/data/.

docs_gen.py renders partials only from committed files; this module produces those files from
real models and real commands, so a test can capture again and compare (tests/test_docs_gen.py).

=============  ===========================  ===============================================
name           writes                       from
=============  ===========================  ===============================================
first-run      docs/data/first-run.json     ``ggufref inspect / generate / chat`` on the
                                            default model (greedy, so the text is stable)
q4k-block      docs/data/q4k-superblock.json  the first Q4_K super-block of a real file
recipe         docs/data/q4km-recipe.json   the tensor types of a Q4_K_M file, per layer
=============  ===========================  ===============================================
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

# The commands "Your first run" shows, exactly as a reader types them.
FIRST_RUN = {
    "inspect": ["inspect"],
    "generate": ["generate", "-p", "The capital of France is", "-n", "24", "--temperature", "0"],
    "chat": [
        "chat",
        "What is a GGUF file? Answer in one sentence.",
        "--temperature",
        "0",
        "-n",
        "32",
    ],
}
# The agent-loop transcripts the tutorials show: the small instruct model, greedy, run from the
# repository root (list_files sees the tutorials directory: a new tutorial means a new capture).
INSTRUCT = "qwen2.5-coder-0.5b-instruct"
TRANSCRIPTS = {
    "chat-instruct": ["chat", "-m", INSTRUCT, "What is a GGUF file? Answer in one sentence."],
    "tool-calculator": [
        "chat",
        "-m",
        INSTRUCT,
        "--tools",
        "calculator",
        "What is 17 * 23? Use the calculator.",
    ],
    "tool-list-files": [
        "chat",
        "-m",
        INSTRUCT,
        "--tools",
        "list_files",
        "--system",
        "",  # the template's own system line: with it the 0.5B calls list_files(".")
        "--tools-root",
        "docs/modules/ROOT/pages/tutorials",
        "Which files are in the workspace?",
    ],
}
GREEDY = ["--temperature", "0"]
# Transcripts of a tutorial's own script (greedy already), run with this Python.
SCRIPTS = {"add-a-tool": "docs/modules/ROOT/examples/tutorial/convert_temperature.py"}
# The Q4_K super-block the byte walk decodes: the instruct model that CI also has.
Q4K_MODEL = "qwen2.5-coder-0.5b-instruct"
RECIPE_MODEL = "qwen2.5-coder-1.5b-instruct"
_TIMING = re.compile(r"\d[\d,]*(\.\d+)?(?= ?(s|tok/s|MiB|GiB|MB|GB|tok|ms)\b)")


# ---------------------------------------------------------------------------- Q4_K_M


def recipe(path: Path) -> dict[str, Any]:
    """The type of each 2-D weight: per layer for the layer matrices, by name otherwise."""
    from ggufref.gguf_file import open_gguf

    f = open_gguf(path)
    n = int(f.arch_get("block_count"))
    kinds: dict[str, list[str]] = {}
    other = {}
    order: dict[int, int] = {}
    for name, t in f.tensors.items():
        if len(t.shape) != 2:
            continue
        if name.startswith("blk."):
            kind = name.split(".")[2]
            kinds.setdefault(kind, [""] * n)[int(name.split(".")[1])] = t.qtype.name
            if kind == "attn_v":
                order[len(order)] = int(name.split(".")[1])
        else:
            other[name] = t.qtype.name
    return {
        "model": path.name,
        "n_layers": n,
        "kinds": dict(sorted(kinds.items())),
        "other": other,
        "attn_v_file_order": [order[i] for i in range(len(order))],
    }


# ---------------------------------------------------------------------------- one Q4_K block


def q4k_block(path: Path) -> dict[str, Any]:
    """The first super-block of the first Q4_K tensor, and every step of its decoding."""
    from gguf import GGMLQuantizationType as T

    from ggufref import formats
    from ggufref.gguf_file import open_gguf

    f = open_gguf(path)
    name, t = next((n, t) for n, t in f.tensors.items() if t.qtype == T.Q4_K)
    raw = np.asarray(t.raw[:144], dtype=np.uint8).reshape(1, 144)
    d, dmin = (float(v) for v in raw[0, 0:4].view(np.float16))
    sc, m = formats.scale_min_k4(raw[:, 4:16])
    q = raw[0, 16:24] & 0x0F  # elements 0..7: low nibbles of the first qs bytes, sub-block 0
    x = formats.dequantize(T.Q4_K, raw)[:8]
    return {
        "model": path.name,
        "tensor": name,
        "shape": list(t.shape),
        "file_offset": int(f.data_offset + t.offset) if hasattr(f, "data_offset") else None,
        "hex": raw[0].tobytes().hex(),
        "d": d,
        "dmin": dmin,
        "sc": [int(v) for v in sc[0]],
        "m": [int(v) for v in m[0]],
        "q": [int(v) for v in q],
        "x": [float(v) for v in x],
    }


# ---------------------------------------------------------------------------- first run


def mask_timings(text: str) -> str:
    """Timing and memory figures vary by run; tests compare the text around them."""
    return _TIMING.sub("#", text)


def run_cli(
    args: list[str], timeout: float = 600, cwd: Path | None = None, script: str | None = None
) -> dict[str, str]:
    """``ggufref ARGS`` (or ``python SCRIPT``) in a child process: command, output, status."""
    env = {**os.environ, "COLUMNS": "100", "PYTHONHASHSEED": "0"}
    argv = [script] if script else ["-m", "ggufref", *args]
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    from ggufref.model_files import cache_dir

    # No machine paths on the site: the cache as a reader's default, then the home directory.
    cache, home = str(cache_dir()), str(Path.home())
    clean = lambda s: s.replace(cache, "~/.cache/ggufref").replace(home, "~")  # noqa: E731
    return {
        "command": f"python {script}" if script else "ggufref " + " ".join(map(_quote, args)),
        "stdout": clean(proc.stdout),
        "stderr": clean(proc.stderr),
        "status": str(proc.returncode),
    }


def _quote(a: str) -> str:
    return f'"{a}"' if (" " in a or not a) else a


def first_run() -> dict[str, Any]:
    return {"runs": {k: run_cli(v) for k, v in FIRST_RUN.items()}}


# ---------------------------------------------------------------------------- writing


def machine_stamp() -> dict[str, Any]:
    from ggufref import kernels

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.date.today().isoformat(),
        "commit": commit or None,
        "machine": {"cpu": cpu, "cores": os.cpu_count(), "isa": kernels.best_isa()},
    }


def transcript(name: str, root: Path) -> dict[str, Any]:
    if name in SCRIPTS:
        run = run_cli([], cwd=root, script=SCRIPTS[name])
    else:
        run = run_cli([*TRANSCRIPTS[name], *GREEDY], cwd=root)
    output = run["stdout"].rstrip("\n") + (
        "\n" + run["stderr"].rstrip("\n") if run["stderr"] else ""
    )
    return {"command": run["command"], "output": output, "status": run["status"], "model": INSTRUCT}


def capture(name: str, root: Path, model: str | None = None) -> Path:
    """Run one capture and write its JSON under docs/data/; returns the path written."""
    from ggufref.docs_gen import FIRST_RUN as FIRST_RUN_JSON
    from ggufref.docs_gen import Q4K_BLOCK, RECIPE
    from ggufref.docs_gen import TRANSCRIPTS as TRANSCRIPTS_DIR
    from ggufref.model_files import resolve_model

    if name.startswith("transcript-") and name[len("transcript-") :] in {**TRANSCRIPTS, **SCRIPTS}:
        short = name[len("transcript-") :]
        data, rel = transcript(short, root), TRANSCRIPTS_DIR / f"{short}.json"
    elif name == "first-run":
        data, rel = first_run(), FIRST_RUN_JSON
    elif name == "q4k-block":
        data, rel = q4k_block(resolve_model(model or Q4K_MODEL, progress=False)), Q4K_BLOCK
    elif name == "recipe":
        data, rel = recipe(resolve_model(model or RECIPE_MODEL, progress=False)), RECIPE
    else:
        from ggufref.errors import GgufrefError

        known = ["first-run", "q4k-block", "recipe"]
        known += [f"transcript-{n}" for n in {**TRANSCRIPTS, **SCRIPTS}]
        raise GgufrefError(f"unknown capture {name!r}; known: " + ", ".join(known))
    out = root / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**machine_stamp(), **data}, indent=1) + "\n", encoding="utf-8")
    return out
