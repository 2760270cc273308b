"""Generated docs: AsciiDoc partials rendered from the code's own tables, so pages cannot drift.

Each partial comes from one source of truth and one jinja2 template in ``docs/templates/``:

=====================  ==================================================================
formats-table.adoc     ``formats.LAYOUTS`` (block sizes as field sums, offsets, formulas)
memory-plan.adoc       ``gguf_file.memory_plan`` of the default model at n_ctx 1024
cli-reference.adoc     ``cli.build_parser()``: every command, argument and help text
tensor-table.adoc      ``cli.inspect_cmd.summary`` of the default model (non-layer + layer 0)
bench-table.adoc       ``docs/data/bench-results.json``, written by ``ggufref bench --json``
=====================  ==================================================================

``ggufref docs-gen`` writes them into ``docs/modules/ROOT/partials/generated/``;
``ggufref docs-gen --check`` writes nothing and lists the stale ones (tests/test_docs_gen.py).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2

from ggufref.errors import GgufrefError

REPO = Path(__file__).resolve().parents[2]
GENERATED = Path("docs/modules/ROOT/partials/generated")
TEMPLATES = Path("docs/templates")
BENCH_RESULTS = Path("docs/data/bench-results.json")
MEMORY_PLAN_CTX = 1024
DTYPE_NAMES = {
    "f2": "fp16",
    "f4": "fp32",
    "bf16": "bf16",
    "u1": "uint8",
    "i1": "int8",
    "i2": "int16",
}


def find_root(start: Path | None = None) -> Path:
    """The repository root: the one holding docs/templates (the source tree, or the cwd)."""
    for cand in (start, REPO, Path.cwd()):
        if cand is not None and (cand / TEMPLATES).is_dir():
            return cand
    raise GgufrefError(
        f"no {TEMPLATES} under {REPO} or {Path.cwd()}; run it in a ggufref source checkout"
    )


def _env(root: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(root / TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["cell"] = _cell
    env.filters["mib"] = lambda n: f"{n / 2**20:,.1f} MiB"
    env.filters["thousands"] = lambda n: f"{n:,}"
    env.filters["dtype_name"] = DTYPE_NAMES.get
    env.filters["sentence"] = lambda s: s[:1].upper() + s[1:]
    return env


def _cell(value: object) -> str:
    """Text safe inside an AsciiDoc table cell (a bare | would start a new cell)."""
    return str(value).replace("|", "\\|")


# ---------------------------------------------------------------------------- data


def formats_data() -> dict[str, Any]:
    from ggufref import formats

    rows = []
    for lay in formats.LAYOUTS.values():
        offsets = lay.offsets()
        sizes = [f.nbytes for f in lay.fields]
        rows.append(
            {
                "name": lay.name,
                "elems": lay.block_elems,
                "bytes": lay.block_bytes,
                "bytes_sum": " + ".join(map(str, sizes)) + f" = {lay.block_bytes}"
                if len(sizes) > 1
                else str(lay.block_bytes),
                "bpw": f"{lay.bits_per_weight:g}",
                "fields": [
                    {
                        "name": f.name,
                        "dtype": f.dtype,
                        "count": f.count,
                        "offset": offsets[f.name],
                        "nbytes": f.nbytes,
                    }
                    for f in lay.fields
                ],
                "formula": lay.formula,
                "activation": lay.name == "Q8_K",
            }
        )
    return {"rows": rows}


def _default_model() -> Any:
    from ggufref.gguf_file import open_gguf
    from ggufref.models import resolve_model

    return open_gguf(resolve_model(None, progress=False))


def memory_plan_data() -> dict[str, Any]:
    from ggufref.gguf_file import memory_plan

    f = _default_model()
    plan = memory_plan(f, MEMORY_PLAN_CTX).as_dict()
    return {"plan": plan, "model": f.path.name, "file_bytes": f.size}


def cli_data() -> dict[str, Any]:
    from ggufref.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in sub._choices_actions}
    commands = []
    for name, p in sub.choices.items():
        args = [_argument(a) for a in p._actions if not isinstance(a, argparse._HelpAction)]
        commands.append(
            {"name": name, "help": helps.get(name) or "", "usage": _usage(p), "args": args}
        )
    top = [
        _argument(a)
        for a in parser._actions
        if a.option_strings and not isinstance(a, argparse._HelpAction)
    ]
    return {"commands": commands, "top": top}


def _usage(p: argparse.ArgumentParser) -> str:
    text = " ".join(p.format_usage().split())
    return text.removeprefix("usage: ")


def _argument(a: argparse.Action) -> dict[str, str]:
    shown = a.metavar if isinstance(a.metavar, str) else a.dest.upper()
    if a.option_strings:
        metavar = "" if a.nargs == 0 else " " + shown
        name = ", ".join(f"{o}{metavar}" for o in a.option_strings)
    else:
        name = shown
    text = a.help or ""
    if "%(" in text:
        text = text % {**vars(a), "prog": "ggufref"}
    # The core count is a property of the machine, not of the CLI: keep the page portable.
    text = re.sub(r"(number of cores), \d+", r"\1", text)
    required = a.required if a.option_strings else a.nargs in (None, 1, "+")
    return {"name": name, "help": text, "required": "yes" if required else ""}


def tensor_data() -> dict[str, Any]:
    from ggufref.cli.inspect_cmd import summary

    f = _default_model()
    s = summary(f, MEMORY_PLAN_CTX)
    picked = [
        t
        for t in s["tensors"]
        if not t["name"].startswith("blk.") or t["name"].startswith("blk.0.")
    ]
    for t in picked:
        t["shape_text"] = " × ".join(map(str, t["shape"]))
    return {
        "model": f.path.name,
        "n_tensors": len(s["tensors"]),
        "tensors": picked,
        "type_counts": s["type_counts"],
        "n_layers": f.arch_get("block_count"),
    }


def bench_data(root: Path) -> dict[str, Any] | None:
    path = root / BENCH_RESULTS
    if not path.is_file():
        return None
    r = json.loads(path.read_text(encoding="utf-8"))
    return {"r": r, "engines": list(r["engines"]), "source": BENCH_RESULTS.as_posix()}


# ---------------------------------------------------------------------------- rendering

PARTIALS: dict[str, Callable[[Path], dict[str, Any] | None]] = {
    "formats-table.adoc": lambda root: formats_data(),
    "memory-plan.adoc": lambda root: memory_plan_data(),
    "cli-reference.adoc": lambda root: cli_data(),
    "tensor-table.adoc": lambda root: tensor_data(),
    "bench-table.adoc": bench_data,
}


def render(name: str, root: Path | None = None) -> str:
    """The text of one generated partial, as the generator would write it now."""
    root = find_root(root)
    data = PARTIALS[name](root)
    template = _env(root).get_template(name + ".j2")
    return template.render(data=data, name=name, missing=BENCH_RESULTS.as_posix())


def notes(root: Path | None = None) -> list[str]:
    """Things the reader of `docs-gen` output should know (a partial rendered from no data)."""
    root = find_root(root)
    if not (root / BENCH_RESULTS).is_file():
        return [
            f"bench-table.adoc: {BENCH_RESULTS} not found, wrote the 'no results yet' note "
            "(run `ggufref bench --json > docs/data/bench-results.json`)"
        ]
    return []


def stale(root: Path | None = None, names: list[str] | None = None) -> list[str]:
    """Generated partials whose committed text differs from what the generator renders now."""
    root = find_root(root)
    out = []
    for name in names or list(PARTIALS):
        path = root / GENERATED / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(name, root):
            out.append((GENERATED / name).as_posix())
    return out


def write_all(root: Path | None = None, names: list[str] | None = None) -> list[Path]:
    root = find_root(root)
    (root / GENERATED).mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or list(PARTIALS):
        path = root / GENERATED / name
        text = render(name, root)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written
