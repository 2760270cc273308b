"""Generated docs partials: committed text == what the generator renders from the code now.

Run: pytest tests/test_docs_gen.py   (fix a failure with `ggufref docs-gen`)
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from ggufref import docs_gen
from ggufref.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "docs" / "bench-results.json"


@pytest.mark.parametrize("name", list(docs_gen.PARTIALS))
def test_committed_partial_is_up_to_date(name: str) -> None:
    committed = (ROOT / docs_gen.GENERATED / name).read_text(encoding="utf-8")
    assert committed == docs_gen.render(name, ROOT), (
        f"{name} is stale: run `ggufref docs-gen` and commit the result"
    )


def test_formats_table_writes_bytes_as_field_sums() -> None:
    text = docs_gen.render("formats-table.adoc", ROOT)
    # Hand-worked from ggml's structs: d + dmin + scales[12] + qs[128]; d + qs[16]; ql+qh+sc+d.
    assert "|Q4_K |256 |2 + 2 + 12 + 128 = 144 |4.5 |" in text
    assert "|Q4_0 |32 |2 + 16 = 18 |4.5 |" in text
    assert "|Q6_K |256 |128 + 64 + 16 + 2 = 210 |6.5625 |" in text
    assert "`scales` uint8[12] @4, `qs` uint8[128] @16" in text


def test_memory_plan_shows_the_kv_cache_of_the_formula() -> None:
    text = docs_gen.render("memory-plan.adoc", ROOT)
    # 18 layers x 1 KV head x (256 + 256) dims x 4 bytes x 1024 positions = 36 MiB.
    assert "|KV cache, float32 K and V (ggufref) | |36.0 MiB |" in text
    assert "|KV cache, fp16 (llama.cpp's default) | |18.0 MiB |" in text


def test_cli_reference_lists_every_command_and_flag() -> None:
    from ggufref.cli import build_parser

    text = docs_gen.render("cli-reference.adoc", ROOT)
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        assert f"=== ggufref {name}\n" in text
        for action in p._actions:
            for opt in action.option_strings:
                if opt not in ("-h", "--help"):
                    assert f"{opt}" in text, f"{name} {opt} missing"


def test_bench_table_from_the_fixture(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    (root / "docs" / "data").mkdir(parents=True)
    shutil.copy2(FIXTURE, root / docs_gen.BENCH_RESULTS)
    text = docs_gen.render("bench-table.adoc", root)
    assert (
        "|Prefill, tokens/s, median (min–max) |400.0 (380.5–410.2) |540.0 (520.0–560.0) |0.74"
        in text
    )
    assert "|Decode, tokens/s, median (min–max) |30.0 (29.0–31.0) |44.0 (42.0–45.0) |0.68" in text
    assert "Fixture CPU \\| 2 cores" in text  # a | in a cell is escaped
    assert docs_gen.notes(root) == []


def test_bench_table_without_llama_cpp(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    (root / "docs" / "data").mkdir(parents=True)
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    del results["engines"]["llama.cpp"]
    (root / docs_gen.BENCH_RESULTS).write_text(json.dumps(results), encoding="utf-8")
    text = docs_gen.render("bench-table.adoc", root)
    assert "llama.cpp (not measured)" in text
    assert "|Decode, tokens/s, median (min–max) |30.0 (29.0–31.0) | |\n" in text


def test_missing_bench_results_gives_a_note(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    assert "No benchmark results are committed yet" in docs_gen.render("bench-table.adoc", root)
    assert any("bench-results.json not found" in n for n in docs_gen.notes(root))


def test_check_exits_1_and_names_a_stale_partial(tmp_path: Path, capsys) -> None:
    root = _scratch_root(tmp_path)
    gen = root / docs_gen.GENERATED
    gen.mkdir(parents=True)
    assert main(["docs-gen", "--root", str(root), "formats-table.adoc"]) == 0
    assert main(["docs-gen", "--check", "--root", str(root), "formats-table.adoc"]) == 0
    (gen / "formats-table.adoc").write_text("edited by hand\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["docs-gen", "--check", "--root", str(root), "formats-table.adoc"]) == 1
    assert (
        "stale: docs/modules/ROOT/partials/generated/formats-table.adoc" in capsys.readouterr().out
    )


def test_unknown_partial_is_a_user_error(capsys) -> None:
    assert main(["docs-gen", "--check", "nope.adoc"]) == 2
    assert "unknown partial 'nope.adoc'" in capsys.readouterr().err


def _scratch_root(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / docs_gen.TEMPLATES, tmp_path / docs_gen.TEMPLATES)
    return tmp_path
