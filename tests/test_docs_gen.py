"""Generated docs partials: committed text == what the generator renders from the code now.

Run: pytest tests/test_docs_gen.py   (fix a failure with `ggufref docs-gen`)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ggufref import docs_gen
from ggufref.cli import main

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "docs" / "bench-results.json"
FIRST_RUN_PARTS = ("inspect", "generate", "chat")


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


# ---------------------------------------------------------------------------- activations, CLI


def test_formats_table_names_the_activation_format_of_every_weight_format() -> None:
    text = docs_gen.render("formats-table.adoc", ROOT)
    rows = {ln.split(" |")[0].lstrip("|"): ln for ln in text.splitlines() if ln.startswith("|Q")}
    # ggml's vec_dot_type of each format: Q8_1 carries the block sum that Q4_1/Q5_1's m needs.
    for fmt, act in {"Q4_0": "Q8_0", "Q4_1": "Q8_1", "Q5_1": "Q8_1", "Q8_0": "Q8_0"}.items():
        assert f"|{act} |" in rows[fmt], rows[fmt]
    for fmt in ("Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"):
        assert "|Q8_K |" in rows[fmt], rows[fmt]
    assert len(docs_gen.kernel_table()) == 13, "csrc/linear.c's FORMATS[] was not parsed"


def test_cli_reference_describes_every_argument() -> None:
    text = docs_gen.render("cli-reference.adoc", ROOT)
    empty = [ln for ln in text.splitlines() if ln.startswith("|`+") and ln.endswith("+` |")]
    assert empty == []
    # chat samples cooler than generate; the page must say so from the parser, not from prose.
    chat = text[text.index("=== ggufref chat") : text.index("=== ggufref bench")]
    assert "0 = greedy (default 0.7)" in chat


def test_cli_summary_links_every_command_to_its_reference_section() -> None:
    text = docs_gen.render("cli-commands.adoc", ROOT)
    ref = docs_gen.render("cli-reference.adoc", ROOT)
    for anchor in re.findall(r"#(cli-[\w-]+)\[", text):
        assert f"[#{anchor}]" in ref


# ---------------------------------------------------------------------------- measured data


def _runs_fixture() -> dict:
    one = json.loads(FIXTURE.read_text(encoding="utf-8"))
    deq = json.loads(json.dumps(one))
    deq["engines"]["ggufref"]["peak_rss_mb"] = 6100.0
    deq["engines"]["ggufref"]["decode_tok_s"] = {"median": 0.4, "min": 0.3, "max": 0.5}
    return {
        "date": "2026-12-01",
        "commit": "abc1234",
        "machine": {"cpu": "Fixture CPU", "cores": 2, "isa": "avx2"},
        "future_field": {"ignored": True},
        "runs": [
            {**one, "model": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "weights": "quantized"},
            {**deq, "model": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", "weights": "dequantized"},
        ],
    }


def test_bench_table_renders_every_run_with_its_stamp(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    (root / "docs" / "data").mkdir(parents=True)
    (root / docs_gen.BENCH_RESULTS).write_text(json.dumps(_runs_fixture()), encoding="utf-8")
    text = docs_gen.render("bench-table.adoc", root)
    assert text.count("|Decode, tokens/s, median (min–max) |") == 2
    assert "weights dequantized" in text
    # A run's own fields win; the file's top level fills in date, machine and commit.
    assert "ISA: avx512" in text and "date: 2026-11-26" in text and "commit: abc1234" in text


def test_why_page_renders_the_measured_rows_or_says_how_to_measure_them(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    text = docs_gen.render("why-measured.adoc", root)
    assert text.count("NOTE: Not measured yet: run `ggufref bench") == 2
    assert "dequantized to FP32 (the seed)" in text  # the plan is computed, always present
    (root / "docs" / "data").mkdir(parents=True)
    (root / docs_gen.BENCH_RESULTS).write_text(json.dumps(_runs_fixture()), encoding="utf-8")
    text = docs_gen.render("why-measured.adoc", root)
    assert "|quantized (the default) |420 MiB |30.0 tok/s" in text
    assert "|dequantized |6100 MiB |0.4 tok/s" in text
    assert text.count("Not measured yet") == 1  # the synthetic 8B row is still missing


def test_plan_of_the_8b_model_keeps_the_weights_about_a_seventh_of_fp32() -> None:
    p = docs_gen.plan_8b()
    assert p is not None
    # Q4_K is 4.5 bits and Q6_K 6.5625 against FP32's 32: the mix lands between 32/6.56 and 32/4.5.
    assert 32 / 6.5625 < p["fp32_bytes"] / p["kept_bytes"] < 32 / 4.5


def test_transcript_partial_says_how_to_fill_it_and_renders_it(tmp_path: Path) -> None:
    root = _scratch_root(tmp_path)
    text = docs_gen.render("transcript-tool-calculator.adoc", root)
    assert "not captured yet" in text and "docs/data/transcripts/tool-calculator.json" in text
    (root / docs_gen.TRANSCRIPTS).mkdir(parents=True)
    t = {"command": "ggufref chat --tools calculator x", "output": "<tool_call>\n{}", "date": "d"}
    (root / docs_gen.TRANSCRIPTS / "tool-calculator.json").write_text(json.dumps(t), "utf-8")
    text = docs_gen.render("transcript-tool-calculator.adoc", root)
    assert "$ ggufref chat --tools calculator x\n<tool_call>\n{}\n----" in text


def test_versions_come_from_the_pinning_files() -> None:
    text = docs_gen.render("versions.adoc", ROOT)
    py = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert f"|ggufref |{py['version']} |" in text
    gguf_pin = next(d for d in py["dependencies"] if d.startswith("gguf"))
    assert f"`{gguf_pin}`" in text
    golden = json.loads((ROOT / "tests/data/goldens/parity_default.json").read_text("utf-8"))
    assert f"llama-cpp-python {golden['llama_cpp_python']}" in text


# ---------------------------------------------------------------------------- Q4_K, by hand


def _scale_min(b: list[int], j: int) -> tuple[int, int]:
    """ggml's get_scale_min_k4, worked from the bit map on the K-quants page."""
    if j < 4:
        return b[j] & 63, b[j + 4] & 63
    return (b[j + 4] & 0xF) | ((b[j - 4] >> 6) << 4), (b[j + 4] >> 4) | ((b[j] >> 6) << 4)


def _check_q4k_walk(w: dict) -> None:
    from gguf import GGMLQuantizationType as T
    from gguf.quants import dequantize

    raw = bytes.fromhex(w["hex"])
    assert len(raw) == 144
    d, dmin = np.frombuffer(raw[:4], dtype="<f2").astype(float)
    assert (w["d"], w["dmin"]) == (float(d), float(dmin))
    scales = list(raw[4:16])
    assert [_scale_min(scales, j) for j in range(8)] == list(zip(w["sc"], w["m"], strict=True))
    assert w["q"] == [b & 0x0F for b in raw[16:24]]
    ref = dequantize(np.frombuffer(raw, np.uint8).reshape(1, 144), T.Q4_K).reshape(-1)[:8]
    assert np.array_equal(np.array(w["x"], dtype=np.float32), ref), (w["x"], ref)


def test_q4k_walk_committed_numbers_agree_with_gguf_quants() -> None:
    _check_q4k_walk(json.loads((ROOT / docs_gen.Q4K_BLOCK).read_text(encoding="utf-8")))


@pytest.mark.parametrize("bits", [0x0181, 0x097D, 0x3C00, 0xC000, 0x0001, 0x7BFF])
def test_q4k_walk_decodes_halves_by_hand_as_numpy_does(bits: int) -> None:
    h = docs_gen._fp16_parts(bits)
    exp = 2.0 ** (h["exp"] - 15) if h["exp"] else 2.0**-14
    value = (-1) ** h["sign"] * ((1 if h["exp"] else 0) + h["man"] / 1024) * exp
    assert value == float(np.array([bits], np.uint16).view(np.float16)[0]), h


def test_q4k_walk_shows_the_bytes_it_decodes() -> None:
    text = docs_gen.render("q4k-walk.adoc", ROOT)
    w = json.loads((ROOT / docs_gen.Q4K_BLOCK).read_text(encoding="utf-8"))
    raw = bytes.fromhex(w["hex"])
    assert f"+  0  {raw[0]:02x} {raw[1]:02x} {raw[2]:02x} {raw[3]:02x} " in text
    assert f"sc[0] = scales[0] & 0x3f = 0x{raw[4]:02x} & 0x3f = {raw[4] & 63}" in text


def test_q4k_walk_reads_the_same_bytes_from_the_model_file() -> None:
    from ggufref import docs_capture

    path = _model_or_skip(docs_capture.Q4K_MODEL)
    fresh = docs_capture.q4k_block(path)
    committed = json.loads((ROOT / docs_gen.Q4K_BLOCK).read_text(encoding="utf-8"))
    assert {k: committed[k] for k in fresh} == fresh
    _check_q4k_walk(fresh)


# ---------------------------------------------------------------------------- Q4_K_M recipe


def test_q4km_recipe_puts_q6_k_where_the_rule_says() -> None:
    from ggufref.plan import more_bits_layer

    r = json.loads((ROOT / docs_gen.RECIPE).read_text(encoding="utf-8"))
    n, order = r["n_layers"], r["attn_v_file_order"]
    # The quantizer counts tensors in file order: position p is layer order[p].
    q6 = {order[p] for p in range(n) if more_bits_layer(p, n)}
    for kind in ("attn_v", "ffn_down"):
        assert {i for i, ty in enumerate(r["kinds"][kind]) if ty == "Q6_K"} == q6, kind
        assert {ty for i, ty in enumerate(r["kinds"][kind]) if i not in q6} == {"Q4_K"}, kind
    for kind in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert set(r["kinds"][kind]) == {"Q4_K"}, kind
    assert r["other"] == {"output.weight": "Q6_K", "token_embd.weight": "Q4_K"}
    assert order != sorted(order), "the 1.5B file is sorted by name, which is the point"


def test_q4km_recipe_is_what_the_model_file_holds() -> None:
    from ggufref import docs_capture

    path = _model_or_skip(docs_capture.RECIPE_MODEL)
    committed = json.loads((ROOT / docs_gen.RECIPE).read_text(encoding="utf-8"))
    fresh = docs_capture.recipe(path)
    assert {k: committed[k] for k in fresh} == fresh


# ---------------------------------------------------------------------------- first run


@pytest.mark.parametrize("part", list(FIRST_RUN_PARTS))
def test_first_run_output_is_what_the_command_prints_now(part: str) -> None:
    from ggufref import docs_capture

    committed = json.loads((ROOT / docs_gen.FIRST_RUN).read_text(encoding="utf-8"))["runs"][part]
    fresh = docs_capture.run_cli(docs_capture.FIRST_RUN[part])
    assert fresh["command"] == committed["command"]
    assert fresh["status"] == committed["status"] == "0"
    for stream in ("stdout", "stderr"):
        got, want = (docs_capture.mask_timings(x[stream]) for x in (fresh, committed))
        assert got == want, (
            f"`{fresh['command']}` {stream} changed: run `ggufref docs-gen "
            "--capture first-run` and commit"
        )


@pytest.mark.parametrize(
    "name",
    [
        "chat-instruct",
        pytest.param("tool-calculator", marks=pytest.mark.slow),
        pytest.param("tool-list-files", marks=pytest.mark.slow),
        pytest.param("add-a-tool", marks=pytest.mark.slow),
    ],
)
def test_committed_transcript_is_what_the_command_prints_now(name: str) -> None:
    from ggufref import docs_capture

    path = ROOT / docs_gen.TRANSCRIPTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(
            f"{path.name} not captured yet (`ggufref docs-gen --capture transcript-{name}`)"
        )
    _model_or_skip(docs_capture.INSTRUCT)
    committed = json.loads(path.read_text(encoding="utf-8"))
    fresh = docs_capture.transcript(name, ROOT)
    assert fresh["command"] == committed["command"]
    assert docs_capture.mask_timings(fresh["output"]) == docs_capture.mask_timings(
        committed["output"]
    ), f"run `ggufref docs-gen --capture transcript-{name}` and commit"


def test_mask_timings_hides_rates_and_sizes_but_not_text() -> None:
    from ggufref import docs_capture

    line = "load 0.31 s | prompt 6 tok, prefill 187.1 tok/s | peak RSS 353 MiB | 24 tok"
    assert docs_capture.mask_timings(line) == (
        "load # s | prompt # tok, prefill # tok/s | peak RSS # MiB | # tok"
    )
    assert docs_capture.mask_timings(" the capital of France") == " the capital of France"


def _model_or_skip(alias: str) -> Path:
    from ggufref.errors import GgufrefError
    from ggufref.model_files import resolve_model

    try:
        return resolve_model(alias, progress=False)
    except GgufrefError as exc:
        # `make test` pulls the 0.5B model and sets GGUFREF_REQUIRE_MODELS=1: there, missing it is
        # a failure. The 1.5B model is not pulled by `make test`, so its checks may skip.
        if os.environ.get("GGUFREF_REQUIRE_MODELS") == "1" and "0.5b" in alias:
            pytest.fail(f"{alias}: {exc} (GGUFREF_REQUIRE_MODELS=1)")
        pytest.skip(f"{alias} is not on this machine ({exc}); the committed data is checked above")
