"""ggufref bench across models and weight modes: one results object (schema 2), one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ggufref import bench
from ggufref.cli import main
from ggufref.gguf_file import open_gguf
from ggufref.model import base as model_base
from ggufref.testing.models import write_model


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("bench")
    return [str(write_model(d / "llama.gguf", "llama")), str(write_model(d / "g.gguf", "gemma3"))]


def test_two_models_both_modes_one_file(
    two_models: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.json"
    argv = ["bench", "-m", two_models[0], "-m", two_models[1], "--weights"]
    argv += ["quantized,dequantized", "--repeat", "1", "--prompt-tokens", "8"]
    argv += ["--gen-tokens", "3", "--ctx", "32", "--threads", "1", "--out", str(out)]
    assert main(argv) == 0
    table = capsys.readouterr().out
    r = json.loads(out.read_text())
    assert r["schema"] == 2 and r["threads"] == 1
    assert {"cpu", "cores", "isa", "load_avg"} <= set(r["machine"])
    assert r["stream_read_gb_s"] > 0 and r["date"]
    got = [(run["model"], run["weights"]) for run in r["runs"]]
    assert got == [(Path(p).name, w) for p in two_models for w in ("quantized", "dequantized")]
    for run in r["runs"]:
        e = run["engines"]["ggufref"]
        assert e["decode_tok_s"]["min"] <= e["decode_tok_s"]["median"] <= e["decode_tok_s"]["max"]
        assert e["peak_rss_mb"] > 0 and "llama.cpp" not in run["engines"]
        assert run["model"] in table
    # decode reads the FP32 copy in dequantized mode: 4 bytes per weight of every read matrix
    q, dq = r["runs"][0], r["runs"][1]
    assert dq["decode_weight_bytes"] > q["decode_weight_bytes"]


def test_decode_weight_bytes_by_hand(two_models: list[str]) -> None:
    f = open_gguf(two_models[1])  # gemma3: the embedding is the tied output, read once per token
    mats = [t for t in f.tensors.values() if len(t.shape) == 2]
    assert bench.decode_weight_bytes(two_models[1]) == sum(t.nbytes for t in mats)
    n = sum(int(t.shape[0]) * int(t.shape[1]) for t in mats)
    assert bench.decode_weight_bytes(two_models[1], "dequantized") == 4 * n


def test_the_worker_protocol(two_models: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Load figures first, then one line per "run", then the peak RSS at "quit"."""
    args = {"threads": 1, "prompt_tokens": 6, "gen_tokens": 3, "repeat": 1, "ctx": 16}
    bench.worker("ggufref", two_models[0], args, commands=["run\n", "run\n", "quit\n", "run\n"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4  # nothing after quit
    assert 0 < lines[0]["load_s"] < lines[0]["ttft_s"] and lines[0]["threads"] == 1
    assert all(x["prefill"] > 0 and x["decode"] > 0 for x in lines[1:3])
    assert lines[3]["peak_rss_mb"] > 0


def test_a_refused_run_is_recorded(
    two_models: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker turns the fit check's refusal into one JSON line; the run keeps it."""
    monkeypatch.setattr(model_base, "available_memory", lambda: 1000)
    args = {"threads": 1, "prompt_tokens": 4, "gen_tokens": 2, "repeat": 1, "ctx": 16}
    bench.worker("ggufref", two_models[0], {**args, "weights": "dequantized"}, commands=[])
    line = json.loads(capsys.readouterr().out)
    assert "needs" in line["error"] and "available" in line["error"]
    monkeypatch.setattr(bench, "Worker", _fake_workers(refuse=line["error"]))
    runs = bench._model_runs(two_models[0], ("dequantized",), args, compare=False)
    assert runs[0]["error"] == line["error"] and runs[0]["engines"] == {}
    table = bench.table(
        {"machine": {"cpu": "x", "isa": "y"}, "threads": 1, "stream_read_gb_s": 1.0, "runs": runs}
        | {k: 1 for k in ("prompt_tokens", "gen_tokens", "ctx", "repeat")}
    )
    assert line["error"] in table


def _fake_workers(refuse: str | None = None, order: list[str] | None = None) -> type:
    """A stand-in for bench.Worker: run i of an engine reports 100 + i tok/s (llama.cpp) or
    200 + i (ggufref); ggufref's dequantized mode refuses when refuse is given."""

    class Fake:
        def __init__(self, engine: str, path: str, args: dict[str, object]):
            self.engine, self.mode = engine, args.get("weights", "quantized")
            self.info: dict[str, object] = {"load_s": 1.0, "ttft_s": 2.0}
            if refuse and engine == "ggufref" and self.mode == "dequantized":
                self.info = {"error": refuse}
            self.prefill: list[float] = []
            self.decode: list[float] = []

        def run(self) -> None:
            if order is not None:
                order.append(f"{self.engine}:{self.mode}")
            base = 200 if self.engine == "ggufref" else 100
            self.prefill.append(base + len(self.prefill))
            self.decode.append(base + len(self.decode))

        def quit(self) -> float:
            return 10.0

        def close(self) -> None:
            pass

    return Fake


def test_repeats_alternate_and_pair_with_their_run(
    two_models: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    monkeypatch.setattr(bench, "Worker", _fake_workers(order=order))
    args = {"threads": 1, "prompt_tokens": 4, "gen_tokens": 2, "repeat": 3, "ctx": 16}
    runs = bench._model_runs(two_models[0], ("quantized", "dequantized"), args, compare=True)
    cpp, q, dq = "llama.cpp:quantized", "ggufref:quantized", "ggufref:dequantized"
    assert order == [cpp, q, q, cpp, cpp, q, cpp, dq, dq, cpp, cpp, dq]
    # llama.cpp's repeats 0-2 went with the quantized run, 3-5 with the dequantized one
    assert runs[0]["engines"]["llama.cpp"]["decode_tok_s"] == {
        "median": 101,
        "min": 100,
        "max": 102,
    }
    assert runs[1]["engines"]["llama.cpp"]["decode_tok_s"] == {
        "median": 104,
        "min": 103,
        "max": 105,
    }
    # each of ggufref's repeats over the llama.cpp repeat next to it; the ratio is their median
    assert runs[1]["paired_ratios"]["decode"] == [round(200 / 103, 3), 1.933, round(202 / 105, 3)]
    assert runs[1]["ratios"]["decode"] == 1.933  # 201 / 104


def test_a_refused_mode_shows_llama_cpps_repeats(
    two_models: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "Worker", _fake_workers(refuse="does not fit"))
    args = {"threads": 1, "prompt_tokens": 4, "gen_tokens": 2, "repeat": 3, "ctx": 16}
    only = bench._model_runs(two_models[0], ("dequantized",), args, compare=True)
    assert only[0]["error"] == "does not fit" and "ratios" not in only[0]
    assert only[0]["engines"]["llama.cpp"]["decode_tok_s"]["median"] == 101
    both = bench._model_runs(two_models[0], ("quantized", "dequantized"), args, compare=True)
    assert both[1]["engines"]["llama.cpp"] == both[0]["engines"]["llama.cpp"]


def test_bad_weights_list_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--weights", "quantized,fp4"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
