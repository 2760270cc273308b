"""Generated docs: AsciiDoc partials rendered from the code's own tables, so pages cannot drift.

Each partial comes from one source of truth and one jinja2 template in ``docs/templates/``:

=====================  ==================================================================
formats-table.adoc     ``formats.LAYOUTS`` (block sizes as field sums, offsets, formulas)
memory-plan.adoc       ``gguf_file.memory_plan`` of the default model at n_ctx 1024
cli-reference.adoc     ``cli.build_parser()``: every command, argument and help text
tensor-table.adoc      ``cli.inspect_cmd.summary`` of the default model (non-layer + layer 0)
bench-table.adoc       ``docs/data/bench-results.json``, written by ``ggufref bench --json``
cli-commands.adoc      ``cli.build_parser()``: one line per command (the CLI page's summary)
model-facts.adoc       the default model's shapes and sizes, as AsciiDoc attributes for prose
q4km-recipe.adoc       ``docs/data/q4km-recipe.json``: which tensors a Q4_K_M file keeps at Q6_K
q4k-walk.adoc          ``docs/data/q4k-superblock.json``: one real Q4_K super-block, decoded
first-run-*.adoc       ``docs/data/first-run.json``: real output of inspect, generate and chat
why-*.adoc             the seed's report and ggufref's measured answer (bench and plan results)
transcript-*.adoc      ``docs/data/transcripts/*.json``: agent-loop transcripts
parity-table.adoc      ``docs/data/parity-report.json``, by ``tools/make_goldens.py --report --out``
versions.adoc          pyproject.toml, package.json, csrc/linear.c and the goldens' metadata
=====================  ==================================================================

Measured data (``docs/data/*.json``) is written by ``ggufref bench`` or by
``ggufref docs-gen --capture NAME`` (docs_capture.py); rendering reads only committed files, so
``docs-gen --check`` gives the same answer on any machine, with or without the big models.
A partial whose data file is missing renders a "not measured yet — run X" note instead.

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
import numpy as np

from ggufref.errors import GgufrefError

REPO = Path(__file__).resolve().parents[2]
GENERATED = Path("docs/modules/ROOT/partials/generated")
TEMPLATES = Path("docs/templates")
DATA = Path("docs/data")
BENCH_RESULTS = DATA / "bench-results.json"
RECIPE = DATA / "q4km-recipe.json"
PARITY_REPORT = DATA / "parity-report.json"
Q4K_BLOCK = DATA / "q4k-superblock.json"
FIRST_RUN = DATA / "first-run.json"
SEED_REPORT = DATA / "seed-report.json"
PLAN_MODEL, PLAN_CTX = "qwen3-8b", 4096
TRANSCRIPTS = DATA / "transcripts"
# Agent-loop transcripts the tutorials show; each renders docs/data/transcripts/<name>.json.
TRANSCRIPT_NAMES = ("tool-calculator", "tool-list-files", "chat-instruct", "add-a-tool")
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

    kernels = {r["format"]: r for r in kernel_table()}
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
                "act": kernels.get(lay.name, {}).get("act", ""),
                "levels": kernels.get(lay.name, {}).get("levels", ""),
            }
        )
    return {"rows": rows}


# What each activation code of csrc/linear.c's format table means, in the docs' words.
ACT_NAMES = {
    "ACT_F32": "float32",
    "ACT_F16R": "fp16",
    "ACT_BF16R": "bf16",
    "ACT_Q8_0X": "Q8_0",
    "ACT_Q8_1X": "Q8_1",
    "ACT_Q8_K": "Q8_K",
}
_FORMAT_ROW = re.compile(r'\{GGR_\w+, "(\w+)", [^,]+, [^,]+, (ACT_\w+), (DOT\d)\((\w+)\)')


def kernel_table() -> list[dict[str, str]]:
    """The rows of ``FORMATS[]`` in csrc/linear.c: format, activation code, SIMD levels.

    The C table is what ``linear`` dispatches on, so the docs read it rather than a copy.
    """
    path = REPO / "csrc" / "linear.c"
    if not path.is_file():
        return []
    levels = {"DOT2": "scalar, AVX2", "DOT3": "scalar, AVX2, AVX-512"}
    return [
        {
            "format": m.group(1),
            "act": ACT_NAMES.get(m.group(2), m.group(2)),
            "levels": levels.get(m.group(3), "scalar, AVX2, AVX-512"),
        }
        for m in _FORMAT_ROW.finditer(path.read_text(encoding="utf-8"))
    ]


def _default_model() -> Any:
    from ggufref.gguf_file import open_gguf
    from ggufref.model_files import resolve_model

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


# Words for arguments the parser leaves without help, so that no row of the reference is empty.
# (A help= on the argument itself wins; this is only the fallback.)
FALLBACK_HELP = {
    "prompt_tokens": "length of the benchmark prompt, in tokens",
    "gen_tokens": "tokens to generate after the prompt, in the decode measurement",
    "ctx": "context size in tokens (sizes the KV cache)",
}


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
    text = a.help or FALLBACK_HELP.get(a.dest, "")
    if "%(" in text:
        text = text % {**vars(a), "prog": "ggufref"}
    shows_default = a.option_strings and a.nargs != 0 and a.default not in (None, "", [])
    if shows_default and a.default != argparse.SUPPRESS and "default" not in text:
        text += "" if f"({a.default})" in text else f" (default {a.default})"
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


def _load(root: Path, rel: Path) -> Any:
    path = root / rel
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def bench_runs(r: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The runs of a results file: one object (one model, one mode) or ``{"runs": [...]}``.

    Fields a run does not carry come from the file's top level (date, machine, commit ...).
    """
    if not r:
        return []
    if "runs" not in r:
        return [r]
    top = {k: v for k, v in r.items() if k != "runs"}
    return [{**top, **run} for run in r["runs"]]


def stamp(r: dict[str, Any] | None) -> str:
    """Where and when a measurement was taken: machine, CPU, ISA, date and commit."""
    if not r:
        return ""
    m = r.get("machine") or {}
    parts = [
        f"machine: {m.get('name') or m.get('host') or 'the project machine'}",
        f"CPU: {m.get('cpu', 'not recorded')}"
        + (f", {m['cores']} cores" if m.get("cores") else ""),
        f"ISA: {m.get('isa') or r.get('isa') or 'not recorded'}",
        f"date: {r.get('date', 'not recorded')}",
        f"commit: {r.get('commit') or m.get('commit') or 'not recorded'}",
    ]
    return "; ".join(parts)


def short_stamp(r: dict[str, Any] | None) -> str:
    """The stamp of a captured output, short enough for a listing title."""
    if not r:
        return ""
    m = r.get("machine") or {}
    commit = r.get("commit") or m.get("commit") or "not recorded"
    cpu = f"{m.get('cpu', 'CPU not recorded')} ({m.get('isa', '?')})"
    return f"{r.get('date', 'undated')}, {cpu}, commit {commit}"


def bench_data(root: Path) -> dict[str, Any] | None:
    r = _load(root, BENCH_RESULTS)
    if r is None:
        return None
    runs = bench_runs(r)
    for run in runs:
        run["stamp"] = stamp(run)
        run.setdefault("engines", {})
    return {
        "r": runs[0],
        "runs": runs,
        "engines": list(runs[0]["engines"]),
        "source": BENCH_RESULTS.as_posix(),
    }


def byte_map_data() -> dict[str, Any]:
    """The on-disk byte map drawn in gguf_file's module comment, without the prose around it."""
    from ggufref import gguf_file

    doc = gguf_file.__doc__ or ""
    start = doc.index("On-disk layout")
    lines = doc[start:].splitlines()[1:]
    body = [ln for ln in lines[1:]]
    end = next(i for i, ln in enumerate(body) if ln and not ln.startswith("    "))
    block = [ln[4:] for ln in body[:end]]
    while block and not block[-1].strip():
        block.pop()
    return {
        "title": lines[0].strip() if lines else "",
        "map": "\n".join(block),
        "after": body[end].strip(),
    }


def parity_facts_data() -> dict[str, Any]:
    """Figures the parity page quotes, from the committed llama.cpp goldens of the default model."""
    g = json.loads((REPO / "tests/data/goldens/parity_default.json").read_text(encoding="utf-8"))
    cases = g["cases"]
    diffs = [float(c["self_max_abs_diff"]) for c in cases]
    france = next(c for c in cases if c["prompt"] == "The capital of France is")
    return {
        "facts": {
            "parity-cases": str(len(cases)),
            "parity-self-diff-min": f"{min(diffs):.1f}",
            "parity-self-diff-max": f"{max(diffs):.1f}",
            "parity-self-flips": str(sum(1 for c in cases if c["self_flip_steps"])),
            "parity-france-tokens": str(len(france["tokens"])),
            "parity-france-gap-step4": f"{france['top2_gap'][4]:.2f}",
            "parity-llama-cpp-python": str(g["llama_cpp_python"]),
        },
        "model": "tests/data/goldens/parity_default.json",
    }


def cli_summary_data() -> dict[str, Any]:
    return {"commands": cli_data()["commands"]}


def model_facts_data() -> dict[str, Any]:
    """Shapes and sizes of the default model that prose quotes, as AsciiDoc attributes."""
    from ggufref.gguf_file import memory_plan

    f = _default_model()
    emb = f.tensor("token_embd.weight")
    n_layer = int(f.arch_get("block_count"))
    n_kv = int(f.arch_get("attention.head_count_kv"))
    k_len = int(f.arch_get("attention.key_length"))
    per_pos = 2 * n_layer * n_kv * k_len * 4
    plan = memory_plan(f, MEMORY_PLAN_CTX)
    mb = lambda n: f"{n / 1e6:,.0f}"  # noqa: E731 - decimal megabytes, as the prose says MB
    return {
        "model": f"the default model ({f.path.name})",
        "facts": {
            "model-file-mb": mb(f.size),
            "model-weights-mb": mb(plan.stored_total),
            "model-fp32-mb": mb(plan.fp32_total),
            "token-embd-mb": mb(emb.nbytes),
            "token-embd-fp32-mb": mb(int(np.prod(emb.shape)) * 4),
            "n-layer": str(n_layer),
            "n-kv-head": str(n_kv),
            "head-dim": str(k_len),
            "kv-bytes-per-pos": f"{per_pos:,}",
            "kv-mb-1024": f"{per_pos * 1024 / 1e6:.1f}",
            "kv-mb-8192": f"{per_pos * 8192 / 1e6:,.0f}",
        },
    }


def parity_table_data(root: Path) -> dict[str, Any] | None:
    r = _load(root, PARITY_REPORT)
    if r is None:
        return None
    return {"r": r, "llama": ", ".join(r["goldens_llama_cpp_python"])}


def recipe_data(root: Path) -> dict[str, Any] | None:
    from ggufref.plan import more_bits_layer

    r = _load(root, RECIPE)
    if r is None:
        return None
    n = r["n_layers"]
    more = [i for i in range(n) if more_bits_layer(i, n)]
    kinds = []
    for kind, types in r["kinds"].items():
        by_type: dict[str, list[int]] = {}
        for i, ty in enumerate(types):
            by_type.setdefault(ty, []).append(i)
        kinds.append({"kind": kind, "by_type": [(ty, _ranges(ls)) for ty, ls in by_type.items()]})
    return {"r": r, "more": _ranges(more), "kinds": kinds}


def _ranges(xs: list[int]) -> str:
    """[0, 1, 2, 5, 8] -> "0–2, 5, 8": layer lists short enough to read."""
    out: list[str] = []
    for x in xs:
        if out and out[-1].split("–")[-1] == str(x - 1):
            out[-1] = f"{out[-1].split('–')[0]}–{x}"
        else:
            out.append(str(x))
    return ", ".join(out)


def q4k_walk_data(root: Path) -> dict[str, Any] | None:
    w = _load(root, Q4K_BLOCK)
    if w is None:
        return None
    raw = bytes.fromhex(w["hex"])
    halves = [_fp16_parts(raw[i] | raw[i + 1] << 8) for i in (0, 2)]
    return {**w, "halves": halves, "b": list(raw)}


def _fp16_parts(bits: int) -> dict[str, Any]:
    """An IEEE half as a reader decodes it by hand: sign, exponent, mantissa and the formula."""
    sign, exp, man = bits >> 15, (bits >> 10) & 31, bits & 1023
    normal = f"(1 + {man} / 1024) × 2^{exp - 15}"
    formula = normal if exp else f"{man} / 1024 × 2^-14"  # subnormal: no implicit 1
    return {
        "hex": f"0x{bits:04x}",
        "bin": f"{sign:01b} {exp:05b} {man:010b}",
        "sign": sign,
        "exp": exp,
        "man": man,
        "formula": ("-" if sign else "") + formula,
        "subnormal": exp == 0,
    }


def first_run_data(root: Path, part: str) -> dict[str, Any] | None:
    r = _load(root, FIRST_RUN)
    if r is None or part not in r["runs"]:
        return None
    run = dict(r["runs"][part])
    if part == "inspect":
        run["stdout"] = _abridge(run["stdout"], keep_head=22, resume_at="quant-type mix:")
    return {"run": run, "r": r, "stamp": short_stamp(r)}


def _abridge(text: str, keep_head: int, resume_at: str) -> str:
    """The head and the summary of a long listing, with the count of the lines left out."""
    lines = text.rstrip("\n").splitlines()
    tail = next((i for i, ln in enumerate(lines) if ln.startswith(resume_at)), len(lines))
    if tail - keep_head < 4:
        return text
    cut = f"  ... ({tail - keep_head - 1} more tensor lines) ..."
    return "\n".join([*lines[:keep_head], cut, "", *lines[tail:]]) + "\n"


def transcript_data(root: Path, name: str) -> dict[str, Any] | None:
    r = _load(root, TRANSCRIPTS / f"{name}.json")
    return None if r is None else {"t": r, "stamp": short_stamp(r)}


def why_seed_data(root: Path) -> dict[str, Any] | None:
    return _load(root, SEED_REPORT)


def why_measured_data(root: Path) -> dict[str, Any]:
    """The rows of the "why" comparison that the results files hold; None for the others."""
    runs = bench_runs(_load(root, BENCH_RESULTS))

    def find(model: str, weights: str | None) -> dict[str, Any] | None:
        for run in runs:
            name = str(run.get("model", "")).lower()
            mode = run.get("weights", "quantized")
            if model in name and (weights is None or mode == weights):
                return {**run, "stamp": stamp(run)}
        return None

    return {
        "quantized": find("1.5b", "quantized"),
        "dequantized": find("1.5b", "dequantized"),
        "synthetic": find("8b", None),
        "plan": plan_8b(),
    }


def plan_8b() -> dict[str, Any] | None:
    """``ggufref plan qwen3-8b``: computed from the preset's shapes, the same on every machine."""
    try:
        from ggufref.plan import plan
    except ImportError:  # pragma: no cover - plan.py is part of the package
        return None
    r = plan(PLAN_MODEL, None, PLAN_CTX, None)
    mp = r["memory_plan"]
    return {
        "model": r["model"],
        "ftype": r["ftype"],
        "n_ctx": mp["n_ctx"],
        "kept_bytes": mp["stored_total"],
        "fp32_bytes": mp["fp32_total"],
        "kv_bytes": mp["kv_cache_bytes"],
    }


def versions_data(root: Path) -> dict[str, Any]:
    """Pinned and declared versions, read from the files that pin them (not the running env)."""
    import tomllib

    py = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pkg = json.loads((REPO / "package.json").read_text(encoding="utf-8"))
    deps = {re.split(r"[=<>!~ \[]", d, maxsplit=1)[0]: d for d in py.get("dependencies", [])}
    goldens = sorted((REPO / "tests" / "data" / "goldens").glob("*.json"))
    llama = sorted(
        {
            str(json.loads(g.read_text(encoding="utf-8")).get("llama_cpp_python", ""))
            for g in goldens
        }
        - {""}
    )
    return {
        "ggufref": py["version"],
        "python": py.get("requires-python", ""),
        "deps": deps,
        "node": pkg.get("engines", {}).get("node", ""),
        "npm": pkg.get("devDependencies", {}),
        "llama": llama,
        "kernels": kernel_table(),
    }


# ---------------------------------------------------------------------------- rendering


def _transcript(name: str) -> Callable[[Path], dict[str, Any] | None]:
    return lambda root: transcript_data(root, name)


PARTIALS: dict[str, Callable[[Path], dict[str, Any] | None]] = {
    "formats-table.adoc": lambda root: formats_data(),
    "memory-plan.adoc": lambda root: memory_plan_data(),
    "cli-reference.adoc": lambda root: cli_data(),
    "cli-commands.adoc": lambda root: cli_summary_data(),
    "gguf-byte-map.adoc": lambda root: byte_map_data(),
    "tensor-table.adoc": lambda root: tensor_data(),
    "model-facts.adoc": lambda root: model_facts_data(),
    "parity-facts.adoc": lambda root: parity_facts_data(),
    "parity-table.adoc": parity_table_data,
    "bench-table.adoc": bench_data,
    "q4km-recipe.adoc": recipe_data,
    "q4k-walk.adoc": q4k_walk_data,
    "first-run-inspect.adoc": lambda root: first_run_data(root, "inspect"),
    "first-run-generate.adoc": lambda root: first_run_data(root, "generate"),
    "first-run-chat.adoc": lambda root: first_run_data(root, "chat"),
    "why-seed.adoc": why_seed_data,
    "seed-facts.adoc": why_seed_data,
    "why-measured.adoc": why_measured_data,
    "versions.adoc": versions_data,
    **{f"transcript-{n}.adoc": _transcript(n) for n in TRANSCRIPT_NAMES},
}
# Partials that share one template (the part of the name after the first dash differs).
TEMPLATE_OF = {
    **{f"first-run-{p}.adoc": "first-run.adoc.j2" for p in ("inspect", "generate", "chat")},
    "parity-facts.adoc": "model-facts.adoc.j2",
    **{f"transcript-{n}.adoc": "transcript.adoc.j2" for n in TRANSCRIPT_NAMES},
}


def render(name: str, root: Path | None = None) -> str:
    """The text of one generated partial, as the generator would write it now."""
    root = find_root(root)
    data = PARTIALS[name](root)
    template = _env(root).get_template(TEMPLATE_OF.get(name, name + ".j2"))
    from ggufref.docs_capture import SCRIPTS
    from ggufref.docs_capture import TRANSCRIPTS as CAPTURED

    return template.render(
        data=data, name=name, missing=BENCH_RESULTS.as_posix(), data_captures=[*CAPTURED, *SCRIPTS]
    )


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
