"""The docs' code is real code: includes resolve, tags balance, nothing long is pasted untested,
and the doc-test machinery (docs/adoc_sybil.py) really fails on a broken page.

Run: pytest tests/test_docs.py      (the page examples themselves: pytest docs/)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sybil.example import SybilFailure
from sybil.parsers.abstract.lexers import LexingException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs"))
import adoc_sybil  # noqa: E402

MODULE = ROOT / "docs" / "modules" / "ROOT"
GENERATED = MODULE / "partials" / "generated"
FIXTURES = ROOT / "tests" / "fixtures" / "docs"
SOURCE_DIRS = ("pysrc", "csrc", "tests", "tools")
MAX_PASTED_LINES = 3
MIN_EXAMPLES, MIN_PAGES = 60, 12
INCLUDE_ANY = re.compile(r"^include::example\$(?P<target>[^\[\s]+)\[(?P<attrs>[^\]]*)\]$", re.M)


def adoc_files() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.adoc"))


def source_files() -> list[Path]:
    """Every text file under pysrc/, csrc/, tests/ and tools/ (the example$ family)."""
    out = []
    for d in SOURCE_DIRS:
        for p in sorted((ROOT / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".so", ".o"):
                out.append(p)
    return out


# ---------------------------------------------------------------------------- example$


@pytest.mark.parametrize("name", SOURCE_DIRS)
def test_example_family_links_to_the_source_tree(name: str) -> None:
    link = MODULE / "examples" / name
    assert link.is_symlink(), f"{link} should be a symlink to ../../../../{name}"
    assert link.resolve() == (ROOT / name).resolve()


def test_every_include_target_and_tag_exists() -> None:
    problems = []
    for adoc in adoc_files():
        for m in INCLUDE_ANY.finditer(adoc.read_text(encoding="utf-8")):
            try:
                adoc_sybil.expand(m.group(0) + "\n", str(adoc.relative_to(ROOT)))
            except LexingException as err:
                problems.append(str(err))
    assert problems == []


def test_the_include_check_catches_a_missing_tag_and_a_missing_file() -> None:
    with pytest.raises(LexingException, match="tag 'no_such_region' not found"):
        adoc_sybil.expand("include::example$pysrc/ggufref/formats.py[tag=no_such_region]\n", "x")
    with pytest.raises(LexingException, match="not found"):
        adoc_sybil.expand("include::example$pysrc/ggufref/no_such_file.py[]\n", "x")


def test_an_included_region_is_what_antora_shows() -> None:
    # Hand-written source: the region of `outer` keeps its lines and drops every tag line,
    # including those of the nested tag.
    text = "a\n# tag::outer[]\nb\n  # tag::inner[]\nc\n  # end::inner[]\nd\n# end::outer[]\ne\n"
    assert adoc_sybil.tagged_region(text, ["outer"], "t") == "b\nc\nd\n"
    assert adoc_sybil.tagged_region(text, ["inner"], "t") == "c\n"


# ---------------------------------------------------------------------------- tag balance


def tag_problems(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    try:
        adoc_sybil.tagged_region(text, [], str(path))
    except LexingException as err:
        return [str(err)]
    return []


def test_every_source_file_has_balanced_tags() -> None:
    problems = [p for f in source_files() for p in tag_problems(f)]
    assert problems == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("# tag::a[]\nx\n", "unclosed tag::a"),
        ("x\n# end::a[]\n", "mismatched end::a"),
        ("// tag::a[]\n// tag::b[]\n// end::a[]\n// end::b[]\n", "mismatched end::a"),
    ],
)
def test_unbalanced_tags_are_found(tmp_path: Path, text: str, message: str) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text(text, encoding="utf-8")
    assert any(message in p for p in tag_problems(bad))


# ---------------------------------------------------------------------------- pasted code


def delimited_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(attribute line before the block, body lines) for every ---- block."""
    blocks: list[tuple[str, list[str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i] == "----":
            end = lines.index("----", i + 1)
            j = i - 1
            while j >= 0 and lines[j].startswith("."):  # a block title
                j -= 1
            blocks.append((lines[j] if j >= 0 else "", lines[i + 1 : end]))
            i = end
        i += 1
    return blocks


def is_tested(attr_line: str) -> bool:
    m = re.match(r"^\[source,(python|c)\b([^\]]*)\]$", attr_line)
    return m is not None and "test=skip" not in m.group(2)


def test_no_long_pasted_block_is_untested() -> None:
    # Generated partials are rendered from committed data and checked by tests/test_docs_gen.py.
    bad = []
    for adoc in adoc_files():
        if GENERATED in adoc.parents:
            continue
        for attrs, body in delimited_blocks(adoc.read_text(encoding="utf-8")):
            pasted = [ln for ln in body if not ln.startswith("include::")]
            if len(pasted) > MAX_PASTED_LINES and not is_tested(attrs):
                bad.append(f"{adoc.relative_to(ROOT)}: {len(pasted)} pasted lines under {attrs!r}")
    assert bad == []


# ---------------------------------------------------------------------------- the doc tests


def parse(page: Path) -> list:
    sybil = adoc_sybil.make_sybil(str(page.parent), patterns=(page.name,))
    return list(sybil.parse(page))


def run_page(page: Path) -> None:
    sybil = adoc_sybil.make_sybil(str(page.parent), patterns=(page.name,))
    document = sybil.parse(page)
    adoc_sybil.setup_page(document.namespace)
    try:
        for example in document:
            example.evaluate()
    finally:
        adoc_sybil.teardown_page(document.namespace)


def test_a_correct_fixture_page_passes() -> None:
    page = FIXTURES / "passing-example.adoc"
    assert len(parse(page)) == 8  # 4 doctest examples, 1 code block, 1 C program, 2 fragments
    run_page(page)


def test_a_wrong_example_fails() -> None:
    with pytest.raises(SybilFailure, match="Expected:\n    22\nGot:\n    21"):
        run_page(FIXTURES / "failing-example.adoc")


def test_a_failing_c_program_fails() -> None:
    with pytest.raises(AssertionError, match="C example exited"):
        run_page(FIXTURES / "failing-c.adoc")


@pytest.mark.parametrize(
    "page, message",
    [
        ("missing-tag.adoc", "tag 'no_such_region' not found"),
        ("missing-target.adoc", "no_such_file.py not found"),
        ("unmarked-c.adoc", "needs test=fragment or test=skip"),
    ],
)
def test_a_broken_page_does_not_even_collect(page: str, message: str) -> None:
    with pytest.raises(LexingException, match=message):
        parse(FIXTURES / page)


def test_pytest_fails_on_a_broken_docs_tree(tmp_path: Path) -> None:
    """End to end: the conftest of docs/ on a scratch tree with one good and two bad pages."""
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy2(ROOT / "docs" / "adoc_sybil.py", docs)
    shutil.copy2(ROOT / "docs" / "conftest.py", docs)
    (docs / "modules" / "ROOT").mkdir(parents=True)
    (docs / "modules" / "ROOT" / "examples").symlink_to(MODULE / "examples")
    for name in ("pysrc", "csrc"):
        (tmp_path / name).symlink_to(ROOT / name)
    for name in ("passing-example.adoc", "failing-example.adoc", "missing-tag.adoc"):
        shutil.copy2(FIXTURES / name, docs / name)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--continue-on-collection-errors", "docs"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "1 failed, 9 passed, 1 error" in out, out
    assert "tag 'no_such_region' not found" in out


def test_the_pages_have_enough_examples() -> None:
    sybil = adoc_sybil.make_sybil(str(ROOT / "docs"))
    per_page = {}
    for page in sorted((MODULE / "pages").rglob("*.adoc")):
        # >>> examples: the regions of Sybil's doctest parser carry no lexemes of our lexer
        examples = [e for e in sybil.parse(page) if "mode" not in e.region.lexemes]
        if examples:
            per_page[page.name] = len(examples)
    assert sum(per_page.values()) >= MIN_EXAMPLES, per_page
    assert len(per_page) >= MIN_PAGES, per_page
